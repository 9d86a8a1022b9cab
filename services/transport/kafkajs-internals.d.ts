// kafkajs's request encoder, not part of its public types (kafkajs-encoder.ts patches it).
declare module 'kafkajs/src/protocol/encoder.js' {
  const Encoder: { new (initialSize?: number): unknown; prototype: object };
  export default Encoder;
}
