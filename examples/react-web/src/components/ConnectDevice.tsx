import { useState } from 'react';
import { useMutation, useSubscription } from 'urql';
import { returnURL } from '../config';
import { describeError } from '../errors';
import { CreateWidgetSessionMutation, WidgetSessionSubscription, type WidgetSession } from '../operations';
import { listOf, useProviders } from '../useProviders';

/** A blank tab opened during the click, waiting for the widget's URL. */
type PendingTab = Window | null;

/**
 * Opens a blank tab at once, while the browser still counts the click as the reason for it
 * (popup blockers allow a new tab only then), and cuts its link back to this page. The
 * widget's URL is filled in once the gateway answers.
 *
 * window.open(url, '_blank', 'noopener') would cut the link too, but it returns null, so the
 * tab could not be pointed at a URL that is not known yet.
 */
function openBlankTab(): PendingTab {
  const tab = window.open('about:blank', '_blank');
  if (!tab) return null;
  tab.opener = null; // the widget's pages must not be able to reach this one
  try {
    tab.document.title = 'Opening the Terra widget…';
    tab.document.body.textContent = 'Opening the Terra widget…';
  } catch {
    // Cosmetic only.
  }
  return tab;
}

export function ConnectDevice() {
  const providers = useProviders();
  const [chosen, setChosen] = useState<string[]>([]);
  const [created, setCreated] = useState<WidgetSession>();
  const [blockedURL, setBlockedURL] = useState<string>();
  const [error, setError] = useState<string>();
  const [{ fetching: creating }, createSession] = useMutation(CreateWidgetSessionMutation);

  // The session as it goes: the gateway pushes each status change, the current one first.
  const [live] = useSubscription({
    query: WidgetSessionSubscription,
    variables: { id: created?.sessionId ?? '' },
    pause: !created,
  });
  const session = live.data?.widgetSession.sessionId === created?.sessionId ? live.data?.widgetSession : created;

  async function connect() {
    const tab = openBlankTab();
    setError(undefined);
    setBlockedURL(undefined);
    setCreated(undefined);
    const back = returnURL();
    const result = await createSession({
      input: {
        ...(chosen.length > 0 ? { providers: chosen } : {}),
        successRedirectUrl: back,
        failureRedirectUrl: back,
      },
    });
    const s = result.data?.createWidgetSession;
    if (result.error || !s) {
      tab?.close();
      setError(result.error ? describeError(result.error) : 'The gateway answered without a session.');
      return;
    }
    setCreated(s);
    if (tab && !tab.closed) {
      tab.location.replace(s.url); // replace: "back" in that tab does not return to the blank page
    } else {
      setBlockedURL(s.url);
    }
  }

  function toggle(name: string, on: boolean) {
    setChosen((prev) => (on ? [...prev, name] : prev.filter((n) => n !== name)));
  }

  return (
    <section className="card" aria-labelledby="connect-heading">
      <h2 id="connect-heading">Connect a device</h2>
      <p className="muted">
        Terra's widget opens in a new tab, where you pick your device and sign in to it. This page
        follows along and updates by itself.
      </p>

      {providers.widget.length > 0 ? (
        <details className="providers">
          <summary>
            Choose providers <span className="muted">(optional: {chosen.length > 0 ? listOf(chosen.map(providers.displayName)) : 'all'})</span>
          </summary>
          <fieldset>
            <legend className="visually-hidden">Providers to offer</legend>
            {providers.widget.map((p) => (
              <label key={p.name} className="check">
                <input type="checkbox" checked={chosen.includes(p.name)} onChange={(e) => toggle(p.name, e.target.checked)} />
                {p.displayName}
              </label>
            ))}
          </fieldset>
        </details>
      ) : providers.error ? (
        <p className="muted">The provider list is unavailable; the widget will offer every provider enabled for this app.</p>
      ) : null}

      <div className="row">
        <button type="button" onClick={() => void connect()} disabled={creating}>
          Connect a device
        </button>
      </div>

      {error && (
        <p role="alert" className="error">
          {error}
        </p>
      )}
      {/* One live region that stays mounted, so screen readers announce each change. */}
      <div role="status">
        {blockedURL && (
          <p>
            Your browser blocked the new tab.{' '}
            <a href={blockedURL} target="_blank" rel="noopener noreferrer">
              Open the Terra widget
            </a>
          </p>
        )}
        {created && created.alreadyConnected.length > 0 && (
          <p className="hint">You already connected {listOf(created.alreadyConnected.map(providers.displayName))}.</p>
        )}
        {session && (
          <p className={`session session-${session.status.toLowerCase()}`}>{sessionText(session, providers.displayName)}</p>
        )}
      </div>
      {live.error && session?.status === 'CREATED' && (
        <p className="error">Could not follow the session: {describeError(live.error)}</p>
      )}
    </section>
  );
}

function sessionText(s: WidgetSession, displayName: (name: string) => string): string {
  const provider = s.provider ? displayName(s.provider) : 'your device';
  switch (s.status) {
    case 'CREATED':
      return 'Waiting for you to finish in the other tab…';
    case 'COMPLETED':
      return `Connected ${provider}.`;
    case 'FAILED':
      return `Connecting ${provider} did not work: ${failureText(s.failureReason)}.`;
    case 'EXPIRED':
      return 'The widget link expired before you finished. Connect again to get a new one.';
  }
}

function failureText(reason: string | null): string {
  switch (reason) {
    case null:
    case '':
      return 'no reason was given';
    case 'user_cancelled':
    case 'cancelled':
      return 'you cancelled';
    case 'access_denied':
    case 'denied':
      return 'access was not allowed';
    default:
      return reason.replaceAll('_', ' ');
  }
}
