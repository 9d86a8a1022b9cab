// kafkajs's request encoder, not part of its public types (kafkajs-encoder.ts patches it).
declare module 'kafkajs/src/protocol/encoder.js' {
  const Encoder: { new (initialSize?: number): unknown; prototype: object };
  export default Encoder;
}
// kafkajs's fetch response decoding (kafkajs-decoder.ts replaces the v11 response's decoder).
declare module 'kafkajs/src/protocol/decoder.js' {
  const Decoder: { new (buffer: Buffer): unknown; prototype: object };
  export default Decoder;
}
declare module 'kafkajs/src/protocol/message/compression/index.js' {
  const compression: { Codecs: Record<number, unknown>; Types: Record<string, number> };
  export default compression;
}
declare module 'kafkajs/src/protocol/requests/fetch/v11/response.js' {
  const response: { decode: (rawData: Buffer) => Promise<unknown>; parse: (data: unknown) => Promise<unknown> };
  export default response;
}
declare module 'kafkajs/src/protocol/requests/fetch/v4/decodeMessages.js' {
  const decodeMessages: (decoder: unknown) => Promise<unknown[]>;
  export default decodeMessages;
}
