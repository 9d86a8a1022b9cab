/**
 * What a Redis server's refusal of a connection means, read from its error text: one table for
 * every place that connects (the source, its Sentinels, the destination), so each names the same
 * cause for the same words. Redis answers these as error replies with no code of their own beyond
 * the first word (WRONGPASS, NOAUTH, NOPERM); older servers and some proxies word them
 * differently ("invalid password", "invalid username-password pair").
 */

/** The server refused the user name or password given. */
const WRONG_CREDENTIALS = /WRONGPASS|invalid password|invalid username/i;
/** The server wants a password and none was given. */
const NO_AUTH = /NOAUTH/i;
/** The user was accepted but lacks the right to a command. */
const NO_PERMISSION = /NOPERM/i;

export type RedisRefusal = 'wrong credentials' | 'password required' | 'missing rights';

/** The kind of refusal an error message reports, or null when it reports none of them. */
export function redisRefusal(message: string): RedisRefusal | null {
  if (NO_PERMISSION.test(message)) return 'missing rights';
  if (WRONG_CREDENTIALS.test(message)) return 'wrong credentials';
  if (NO_AUTH.test(message)) return 'password required';
  return null;
}

/** The server refused to let this connection in for want of (right) credentials. */
export function isAuthRefusal(message: string): boolean {
  const r = redisRefusal(message);
  return r === 'wrong credentials' || r === 'password required';
}
