// The end user's connections, live: one connectedUsers snapshot, then connectionEvents.
// The list changes in place; the page is never reloaded.

import { useCallback, useEffect, useReducer, useRef, useState } from 'react';
import { useClient, type CombinedError } from 'urql';
import { connectionList, initialConnections, reduceConnections } from './connections';
import { useLive } from './live';
import { ConnectedUsersQuery, ConnectionEventsSubscription, type TerraUser } from './operations';

export interface Connections {
  users: TerraUser[];
  loaded: boolean;
  /** Why the list could not be fetched, if it could not. */
  listError: CombinedError | undefined;
  /** Why live updates stopped, if they did; the list then refreshes when the tab is shown. */
  eventsError: CombinedError | undefined;
  /** Applies a connection a mutation returned (e.g. disconnectUser), ahead of its event. */
  applyChange: (user: TerraUser) => void;
}

export function useConnections(): Connections {
  const client = useClient();
  const { reconnects, state: liveState } = useLive();
  const [state, dispatch] = useReducer(reduceConnections, initialConnections);
  const [listError, setListError] = useState<CombinedError>();
  const [eventsError, setEventsError] = useState<CombinedError>();
  const [refreshes, setRefreshes] = useState(0);
  const refresh = useCallback(() => setRefreshes((n) => n + 1), []);

  // How many changes were applied when a snapshot is requested, read outside of render.
  const seq = useRef(0);
  useEffect(() => {
    seq.current = state.seq;
  }, [state.seq]);

  // Events first, so that nothing that happens while the snapshot is on its way is missed.
  useEffect(() => {
    const { unsubscribe } = client.subscription(ConnectionEventsSubscription, {}).subscribe((result) => {
      setEventsError(result.error);
      const event = result.data?.connectionEvents;
      if (!event) return;
      dispatch({ type: 'event', event: event.type, user: event.terraUser });
      // The event names only the new connection; the snapshot drops the one it replaced.
      if (event.type === 'REAUTHENTICATED') refresh();
    });
    return unsubscribe;
  }, [client, refresh]);

  // The snapshot: on load, after the WebSocket came back (events may have been missed), and
  // when asked for.
  useEffect(() => {
    let cancelled = false;
    const requestedAtSeq = seq.current;
    void client
      .query(ConnectedUsersQuery, {}, { requestPolicy: 'network-only' })
      .toPromise()
      .then((result) => {
        if (cancelled) return;
        setListError(result.error);
        if (result.data) dispatch({ type: 'snapshot', users: result.data.connectedUsers, requestedAtSeq });
      });
    return () => {
      cancelled = true;
    };
  }, [client, reconnects, refreshes]);

  // Without live updates, fall back to what the gateway's README suggests for any app:
  // refresh when the person comes back to this tab.
  const notLive = eventsError !== undefined || liveState === 'refused';
  useEffect(() => {
    if (!notLive) return;
    const onVisible = () => {
      if (document.visibilityState === 'visible') refresh();
    };
    document.addEventListener('visibilitychange', onVisible);
    return () => document.removeEventListener('visibilitychange', onVisible);
  }, [notLive, refresh]);

  const applyChange = useCallback((user: TerraUser) => dispatch({ type: 'changed', user }), []);

  return { users: connectionList(state), loaded: state.loaded, listError, eventsError, applyChange };
}
