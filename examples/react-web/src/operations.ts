// The GraphQL operations this app sends, typed by hand from the gateway's schema
// (graph/schema/*.graphqls in the terragate repository). A larger app would generate these
// types with graphql-codegen or gql.tada instead.

import { gql } from 'urql';

export type ConnectionStatus = 'CONNECTED' | 'ERROR' | 'REVOKED' | 'DISCONNECTED';

export type ConnectionEventType =
  | 'CONNECTED'
  | 'DISCONNECTED'
  | 'REVOKED'
  | 'ERROR'
  | 'PERMISSIONS_CHANGED'
  | 'REAUTHENTICATED';

export type WidgetSessionStatus = 'CREATED' | 'COMPLETED' | 'FAILED' | 'EXPIRED';

/** One provider account the end user connected through Terra. */
export interface TerraUser {
  userId: string;
  provider: string;
  active: boolean;
  status: ConnectionStatus;
  scopes: string[];
  connectedAt: string;
  updatedAt: string;
}

export interface Provider {
  name: string;
  displayName: string;
  sdkOnly: boolean;
}

export interface WidgetSession {
  sessionId: string;
  url: string;
  expiresAt: string;
  status: WidgetSessionStatus;
  provider: string | null;
  failureReason: string | null;
  alreadyConnected: string[];
}

export interface ConnectionEvent {
  type: ConnectionEventType;
  at: string;
  terraUser: TerraUser;
}

const TERRA_USER_FIELDS = 'userId provider active status scopes connectedAt updatedAt';
const SESSION_FIELDS = 'sessionId url expiresAt status provider failureReason alreadyConnected';

export const ProvidersQuery = gql<{ providers: Provider[] }, Record<string, never>>(`
  query Providers {
    providers { name displayName sdkOnly }
  }
`);

export const ConnectedUsersQuery = gql<{ connectedUsers: TerraUser[] }, Record<string, never>>(`
  query ConnectedUsers {
    connectedUsers { ${TERRA_USER_FIELDS} }
  }
`);

export const ConnectionEventsSubscription = gql<{ connectionEvents: ConnectionEvent }, Record<string, never>>(`
  subscription ConnectionEvents {
    connectionEvents { type at terraUser { ${TERRA_USER_FIELDS} } }
  }
`);

export interface CreateWidgetSessionInput {
  providers?: string[];
  successRedirectUrl?: string;
  failureRedirectUrl?: string;
}

export const CreateWidgetSessionMutation = gql<
  { createWidgetSession: WidgetSession },
  { input: CreateWidgetSessionInput }
>(`
  mutation CreateWidgetSession($input: CreateWidgetSessionInput) {
    createWidgetSession(input: $input) { ${SESSION_FIELDS} }
  }
`);

export const WidgetSessionSubscription = gql<{ widgetSession: WidgetSession }, { id: string }>(`
  subscription WidgetSession($id: ID!) {
    widgetSession(id: $id) { ${SESSION_FIELDS} }
  }
`);

export const DisconnectUserMutation = gql<{ disconnectUser: TerraUser }, { userId: string }>(`
  mutation DisconnectUser($userId: ID!) {
    disconnectUser(userId: $userId) { ${TERRA_USER_FIELDS} }
  }
`);
