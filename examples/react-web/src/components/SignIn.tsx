import { useEffect, useRef, useState, type FormEvent } from 'react';
import { demoSignIn, type Session } from '../session';

interface Props {
  gateway: string;
  onSignedIn: (session: Session) => void;
}

/**
 * The demo's sign-in: asks the demo gateway for a token. A real app signs people in its own
 * way and hands its own token to the gateway instead.
 */
export function SignIn({ gateway, onSignedIn }: Props) {
  const [name, setName] = useState('');
  const [pending, setPending] = useState(false);
  const [error, setError] = useState<string>();
  const abort = useRef<AbortController | null>(null);
  useEffect(() => () => abort.current?.abort(), []);

  async function submit(e: FormEvent) {
    e.preventDefault();
    abort.current?.abort();
    const controller = new AbortController();
    abort.current = controller;
    setPending(true);
    setError(undefined);
    try {
      onSignedIn(await demoSignIn(gateway, name.trim() || 'demo-user', controller.signal));
    } catch (err) {
      if (!controller.signal.aborted) setError(err instanceof Error ? err.message : String(err));
    } finally {
      if (!controller.signal.aborted) setPending(false);
    }
  }

  return (
    <section className="card" aria-labelledby="sign-in-heading">
      <h2 id="sign-in-heading">Sign in</h2>
      <p className="muted">
        The demo gateway hands out tokens for any name. Your app would use its own sign-in here.
      </p>
      <form onSubmit={submit} className="row">
        <label className="field">
          <span>Name</span>
          <input
            value={name}
            onChange={(e) => setName(e.target.value)}
            placeholder="demo-user"
            autoComplete="username"
            maxLength={64}
          />
        </label>
        <button type="submit" disabled={pending}>
          Sign in as demo user
        </button>
      </form>
      {error && (
        <p role="alert" className="error">
          {error}
        </p>
      )}
    </section>
  );
}
