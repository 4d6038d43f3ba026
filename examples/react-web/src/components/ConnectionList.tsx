import { useState } from 'react';
import { useMutation } from 'urql';
import { describeError } from '../errors';
import { useLive } from '../live';
import { DisconnectUserMutation, type ConnectionStatus, type TerraUser } from '../operations';
import { useConnections } from '../useConnections';
import { useProviders } from '../useProviders';

const STATUS_TEXT: Record<ConnectionStatus, string> = {
  CONNECTED: 'Connected',
  ERROR: 'Needs attention',
  REVOKED: 'Revoked',
  DISCONNECTED: 'Disconnected',
};

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });

export function ConnectionList() {
  const { users, loaded, listError, eventsError, applyChange } = useConnections();
  const { displayName } = useProviders();
  const live = useLive();
  const notLive = eventsError !== undefined || live.state === 'refused';

  return (
    <section className="card" aria-labelledby="connections-heading">
      <div className="card-head">
        <h2 id="connections-heading">Your connections</h2>
        <span className={`live live-${notLive ? 'closed' : live.state}`} title="Live updates over WebSocket">
          {notLive ? 'not live' : live.state}
        </span>
      </div>
      {listError && (
        <p role="alert" className="error">
          Could not load your connections: {describeError(listError)}
        </p>
      )}
      {notLive && (
        <p className="muted">
          Live updates stopped ({eventsError ? describeError(eventsError) : 'the gateway refused your sign-in'}). The
          list refreshes when you come back to this tab.
        </p>
      )}
      {!loaded && !listError && <p className="muted">Loading…</p>}
      {loaded && users.length === 0 && <p className="muted">No devices connected yet.</p>}
      {users.length > 0 && (
        <ul aria-label="Connections" className="connections">
          {users.map((u) => (
            <ConnectionRow key={u.userId} user={u} name={displayName(u.provider)} onChanged={applyChange} />
          ))}
        </ul>
      )}
    </section>
  );
}

interface RowProps {
  user: TerraUser;
  name: string;
  onChanged: (user: TerraUser) => void;
}

function ConnectionRow({ user, name, onChanged }: RowProps) {
  const [{ fetching }, disconnect] = useMutation(DisconnectUserMutation);
  const [error, setError] = useState<string>();

  async function onDisconnect() {
    setError(undefined);
    const result = await disconnect({ userId: user.userId });
    if (result.error) {
      setError(describeError(result.error));
    } else if (result.data) {
      onChanged(result.data.disconnectUser);
    }
  }

  return (
    <li className="connection">
      <div className="connection-main">
        <strong className="provider">{name}</strong>
        <span className={`badge badge-${user.status.toLowerCase()}`}>{STATUS_TEXT[user.status]}</span>
        <span className="muted small">
          since <time dateTime={user.connectedAt}>{dateTime.format(new Date(user.connectedAt))}</time>
        </span>
      </div>
      <button type="button" className="secondary" onClick={() => void onDisconnect()} disabled={fetching}>
        {fetching ? 'Disconnecting…' : 'Disconnect'}
      </button>
      {error && (
        <p role="alert" className="error full">
          {error}
        </p>
      )}
    </li>
  );
}
