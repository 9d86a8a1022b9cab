/**
 * The local stack's parts are real and usable from Node: an Avro record registered in the
 * registry goes through Kafka and decodes back; a value goes through Redis.
 */
import { SchemaRegistry, SchemaType } from '@kafkajs/confluent-schema-registry';
import { Redis } from 'ioredis';
import { Kafka, logLevel } from 'kafkajs';
import { describe, expect, it } from 'vitest';
import { stack, uniqueName } from '../helpers/stack-env.js';

describe('local stack', () => {
  it('round-trips an Avro record registered in the schema registry through Kafka', async () => {
    const { kafka: brokers, registry: registryUrl } = stack();
    const topic = uniqueName('stack-avro');
    const registry = new SchemaRegistry({ host: registryUrl });
    const schema = {
      type: 'record',
      name: 'Probe',
      namespace: 'io.replistream.test',
      fields: [
        { name: 'id', type: 'long' },
        { name: 'payload', type: 'bytes' },
        { name: 'note', type: ['null', 'string'], default: null },
      ],
    };
    const { id } = await registry.register({ type: SchemaType.AVRO, schema: JSON.stringify(schema) }, { subject: `${topic}-value` });
    const record = { id: 42, payload: Buffer.from([0, 1, 2, 255]), note: 'héllo' };
    const value = await registry.encode(id, record);
    expect(value[0]).toBe(0); // Confluent wire format: magic byte, then the schema id

    const kafka = new Kafka({ brokers: [brokers], clientId: 'stack-test', logLevel: logLevel.WARN });
    const admin = kafka.admin();
    await admin.connect();
    await admin.createTopics({ topics: [{ topic, numPartitions: 1 }], waitForLeaders: true });
    await admin.disconnect();
    const producer = kafka.producer();
    await producer.connect();
    await producer.send({ topic, messages: [{ key: 'k', value }] });
    await producer.disconnect();

    const consumer = kafka.consumer({ groupId: uniqueName('stack-avro-g') });
    await consumer.connect();
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    const decoded = await new Promise<unknown>((resolve, reject) => {
      consumer.run({ eachMessage: async ({ message }) => resolve(await registry.decode(message.value!)) }).catch(reject);
    });
    await consumer.disconnect();
    expect(decoded).toEqual(record);
  });

  it('writes and reads a value in the source Redis', async () => {
    const redis = new Redis(stack().source, { protocol: 2, lazyConnect: true, maxRetriesPerRequest: 1 } as never);
    await redis.connect();
    const key = uniqueName('stack-redis');
    await redis.set(key, Buffer.from([0, 0xff, 0x10]));
    expect(await redis.getBuffer(key)).toEqual(Buffer.from([0, 0xff, 0x10]));
    await redis.del(key);
    await redis.quit();
  });
});
