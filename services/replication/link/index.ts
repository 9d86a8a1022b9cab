export {
  ReplicaLink,
  parseRedisUrl,
  type ReplicaLinkOptions,
  type ReplicaLinkTlsOptions,
  type ReplicaLinkEvents,
  type ReplicaLinkState,
  type ReplicaPosition,
  type FullResyncInfo,
  type ContinueInfo,
  type RdbEndInfo,
  type DisconnectedInfo,
  type LinkHealth,
} from './replica-link.js';
export type { CommandUnit } from '../resp/grouper.js';
