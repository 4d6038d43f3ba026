import { useEffect, useState, type ReactNode } from 'react';
import { Provider as UrqlProvider } from 'urql';
import { createGatewayClient, type GatewayClient, type LiveState } from '../gateway';
import { LiveContext } from '../live';

interface Props {
  gateway: string;
  token: string;
  children: ReactNode;
}

/**
 * Gives its children a GraphQL client signed in with `token`. A new token gets a new client
 * (and a new WebSocket); the old one is closed.
 */
export function GatewayProvider({ gateway, token, children }: Props) {
  const [gw, setGw] = useState<GatewayClient | null>(null);
  const [state, setState] = useState<LiveState>('connecting');
  const [reconnects, setReconnects] = useState(0);

  // Made in an effect, not during render, so that it is closed exactly when it is replaced.
  useEffect(() => {
    const next = createGatewayClient({
      gateway,
      token,
      onLiveState: setState,
      onReconnected: () => setReconnects((n) => n + 1),
    });
    setGw(next);
    return () => {
      next.dispose();
      setGw(null);
    };
  }, [gateway, token]);

  if (!gw) return null;
  return (
    <UrqlProvider value={gw.client}>
      <LiveContext.Provider value={{ state, reconnects }}>{children}</LiveContext.Provider>
    </UrqlProvider>
  );
}
