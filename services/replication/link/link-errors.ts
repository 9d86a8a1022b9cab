/**
 * The replica link's errors, and which of them it retries: a lost connection or a source not ready
 * yet is retried (`retriable`); a protocol violation, a consumer failure or a TLS setting to fix
 * stops the link.
 */
import { ReplistreamError } from '../../common/errors.js';
import type { Endpoint } from './source-endpoint.js';

export function connectionError(message: string, cause?: unknown): ReplistreamError {
  return new ReplistreamError('CONNECTION', message, { retriable: true, cause });
}

/** TLS verification failures need a configuration change: retrying cannot help. */
const TLS_CONFIG_ERRORS =
  /^(DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT(_LOCALLY)?|CERT_\w+|ERR_TLS_CERT_ALTNAME_INVALID|ERR_SSL_WRONG_VERSION_NUMBER|ERR_SSL_\w*CERTIFICATE\w*)$/;

export function socketError(ep: Endpoint, err: Error & { code?: string }): ReplistreamError {
  const message = `connection to ${ep.safeUrl} failed: ${err.message}`;
  if (ep.tls && err.code && TLS_CONFIG_ERRORS.test(err.code)) {
    return new ReplistreamError('CONNECTION', `${message} (check the source's TLS settings: CA, host name)`, {
      retriable: false,
      setting: 'source',
      cause: err,
      details: { code: err.code },
    });
  }
  return connectionError(message, err);
}

export function protocolError(message: string): ReplistreamError {
  return new ReplistreamError('PROTOCOL', `source: ${message}`);
}

/** Carries a stream error out of the consumer-delivery loop so it is not blamed on the consumer. */
export class LinkFailure extends Error {
  constructor(readonly error: ReplistreamError) {
    super(error.message);
  }
}

export function toLinkError(err: unknown): ReplistreamError {
  if (err instanceof ReplistreamError) return err;
  if (err instanceof LinkFailure) return err.error;
  return new ReplistreamError('INTERNAL', `replica link: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
}

export function consumerError(err: unknown): ReplistreamError {
  if (err instanceof LinkFailure) return err.error;
  if (err instanceof ReplistreamError) return err;
  return new ReplistreamError('INTERNAL', `replication consumer failed: ${err instanceof Error ? err.message : String(err)}`, {
    cause: err,
  });
}
