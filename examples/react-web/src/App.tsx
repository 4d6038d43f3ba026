import { useState } from 'react';
import { ConnectDevice } from './components/ConnectDevice';
import { ConnectionList } from './components/ConnectionList';
import { GatewayProvider } from './components/GatewayProvider';
import { SignIn } from './components/SignIn';
import { clearSession, loadSession, saveSession, type Session } from './session';

interface Props {
  gateway: string;
}

export function App({ gateway }: Props) {
  const [session, setSession] = useState<Session | null>(() => loadSession(gateway));

  function signedIn(s: Session) {
    saveSession(gateway, s);
    setSession(s);
  }

  function signOut() {
    clearSession();
    setSession(null);
  }

  return (
    <main className="page">
      <header className="page-head">
        <div>
          <h1>Connect a wearable</h1>
          <p className="muted">
            An example app for terragate, using gateway <code>{gateway}</code>.
          </p>
        </div>
        {session && (
          <div className="who">
            <span>
              Signed in as <strong>{session.user}</strong>
            </span>
            <button type="button" className="link" onClick={signOut}>
              Sign out
            </button>
          </div>
        )}
      </header>

      {session ? (
        <GatewayProvider gateway={gateway} token={session.token}>
          <ConnectDevice />
          <ConnectionList />
        </GatewayProvider>
      ) : (
        <SignIn gateway={gateway} onSignedIn={signedIn} />
      )}
    </main>
  );
}
