// Signing in. In this example the token comes from the demo gateway's POST /demo/token; a
// real app gets it from its own sign-in and passes it to the gateway the same way.

/** The signed-in end user: who they are and the bearer token the gateway accepts. */
export interface Session {
  user: string;
  token: string;
}

// sessionStorage lasts as long as the tab and is never sent anywhere by the browser. The
// token never goes into a URL, where it would end up in history and server logs.
const STORAGE_KEY = 'terragate-example.session';

/** The session kept for this gateway in this tab, if any. */
export function loadSession(gateway: string): Session | null {
  try {
    const raw = sessionStorage.getItem(STORAGE_KEY);
    if (!raw) return null;
    const stored = JSON.parse(raw) as Partial<Session> & { gateway?: string };
    if (stored.gateway !== gateway || typeof stored.token !== 'string' || typeof stored.user !== 'string') {
      return null;
    }
    return { user: stored.user, token: stored.token };
  } catch {
    return null;
  }
}

export function saveSession(gateway: string, session: Session): void {
  try {
    sessionStorage.setItem(STORAGE_KEY, JSON.stringify({ gateway, ...session }));
  } catch {
    // Storage may be disabled; the session then lasts until the page is reloaded.
  }
}

export function clearSession(): void {
  try {
    sessionStorage.removeItem(STORAGE_KEY);
  } catch {
    // Nothing was stored.
  }
}

/**
 * Asks the demo gateway for a token for `user`. Only a gateway started with `-demo` has
 * this endpoint; it stands in for your own sign-in.
 */
export async function demoSignIn(gateway: string, user: string, signal?: AbortSignal): Promise<Session> {
  let res: Response;
  try {
    res = await fetch(`${gateway}/demo/token`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ user }),
      signal,
    });
  } catch (err) {
    if (signal?.aborted) throw err;
    throw new Error(
      `Could not reach the gateway at ${gateway}. Is it running, and is this page's origin ` +
        `(${window.location.origin}) in its CORS_ALLOWED_ORIGINS?`,
    );
  }
  if (res.status === 404 || res.status === 405) {
    throw new Error(`${gateway} has no demo sign-in. Start it with "go run . -demo", or sign in with your app's own token.`);
  }
  let body: unknown;
  try {
    body = await res.json();
  } catch {
    body = null;
  }
  if (!res.ok) {
    const detail = isRecord(body) && typeof body.error === 'string' ? `: ${body.error}` : '';
    throw new Error(`Demo sign-in failed (HTTP ${res.status})${detail}`);
  }
  if (!isRecord(body) || typeof body.token !== 'string' || body.token === '') {
    throw new Error('Demo sign-in answered without a token.');
  }
  return { token: body.token, user: typeof body.user === 'string' && body.user ? body.user : user };
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null;
}
