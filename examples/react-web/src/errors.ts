// Turning the gateway's errors into sentences. The gateway puts a stable code in each
// error's extensions.code; messages are for people and may change, codes are for code.

import type { CombinedError } from 'urql';
import { FORBIDDEN, isCloseEvent } from './gateway';

/** The extensions.code of the first GraphQL error, if any. */
export function errorCode(error: CombinedError | undefined): string | undefined {
  const code = error?.graphQLErrors[0]?.extensions?.code;
  return typeof code === 'string' ? code : undefined;
}

/** True when signing in again is the fix. */
export function needsSignIn(error: CombinedError | undefined): boolean {
  if (!error) return false;
  if (errorCode(error) === 'UNAUTHENTICATED') return true;
  const network: unknown = error.networkError;
  return isCloseEvent(network) && network.code === FORBIDDEN;
}

/** A sentence for a person, saying what went wrong and, where it helps, what to do. */
export function describeError(error: CombinedError): string {
  if (needsSignIn(error)) return 'Your sign-in was not accepted or has expired. Sign out and sign in again.';
  const first = error.graphQLErrors[0];
  if (first) {
    const ext = first.extensions ?? {};
    switch (ext.code) {
      case 'BAD_USER_INPUT':
        if (ext.field === 'successRedirectUrl' || ext.field === 'failureRedirectUrl') {
          return (
            `The gateway does not allow this page as the widget's way back. ` +
            `Add ${window.location.origin}/ to its ALLOWED_REDIRECT_URLS.`
          );
        }
        return first.message;
      case 'UPSTREAM_UNAVAILABLE':
        return 'Terra could not be reached just now. Nothing was changed; try again in a moment.';
      case 'UPSTREAM_ERROR':
        if (typeof ext.retryAfterSeconds === 'number') {
          return `Terra is busy. Try again in ${ext.retryAfterSeconds} seconds.`;
        }
        return `Terra refused the request: ${first.message}`;
      case 'INTERNAL':
        return 'The gateway failed. Try again; if it keeps failing, its log has the details.';
      default:
        return first.message;
    }
  }
  if (error.networkError || error.response) {
    return 'Could not reach the gateway. Check your connection and try again.';
  }
  return error.message;
}
