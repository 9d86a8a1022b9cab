export { RespParser, parseInteger, type RespCommand, type RespParserOptions } from './parser.js';
export { CommandGrouper, isGetAck, type CommandUnit, type CommandGrouperOptions } from './grouper.js';
export {
  ReplyReader,
  SnapshotReader,
  EOF_MARK_LENGTH,
  type HandshakeReply,
  type SnapshotProgress,
} from './reply-reader.js';
