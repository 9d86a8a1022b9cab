import { describe, expect, it } from 'vitest';
import { kafkaError } from '../../../services/transport/kafka.js';

function named(name: string, message: string, cause?: unknown): Error {
  const e = new Error(message, cause === undefined ? undefined : { cause });
  e.name = name;
  return e;
}

describe('kafkaError', () => {
  it('a connection error, also the one kafkajs wraps after its retries, names the kafka setting and is retriable', () => {
    const direct = kafkaError('producing', named('KafkaJSConnectionError', 'Connection error: connect ECONNREFUSED 127.0.0.1:9092'));
    const wrapped = kafkaError('producing', named('KafkaJSNonRetriableError', 'Connection error: connect ECONNREFUSED 127.0.0.1:9092', named('KafkaJSConnectionError', 'x')));
    const causeOnly = kafkaError('writing position', named('KafkaJSNonRetriableError', 'gave up', named('KafkaJSConnectionError', 'Connection timeout')));
    for (const e of [direct, wrapped, causeOnly]) {
      expect(e.code).toBe('CONNECTION');
      expect(e.setting).toBe('kafka');
      expect(e.retriable).toBe(true);
      expect(e.message).toMatch(/^kafka: .*check the kafka setting/);
    }
  });

  it('SASL refusals name the SASL settings; anything else stays internal', () => {
    expect(kafkaError('joining', named('KafkaJSSASLAuthenticationError', 'SASL SCRAM SHA512 authentication failed')).setting).toBe('kafka-sasl-username');
    const other = kafkaError('producing', named('KafkaJSProtocolError', 'The request included a message larger than the max message size the server will accept'));
    expect(other.code).toBe('INTERNAL');
    expect(other.setting).toBeUndefined();
  });
});
