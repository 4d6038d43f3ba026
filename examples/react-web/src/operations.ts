// The GraphQL operations this app sends. Their types are generated from the gateway's
// schema (graph/schema.graphql in the terragate repository) by graphql-codegen into src/gql/
// (`npm run codegen`, which `npm run build` runs first): an operation the schema does not
// allow fails the build.

import { graphql } from './gql';
import type {
  ConnectionEventsSubscription as ConnectionEventsResult,
  ProvidersQuery as ProvidersResult,
  TerraUserFieldsFragment,
  WidgetSessionFieldsFragment,
} from './gql/graphql';

export type { ConnectionEventType, ConnectionStatus, CreateWidgetSessionInput, WidgetSessionStatus } from './gql/graphql';

/** One provider account the end user connected through Terra. */
export type TerraUser = TerraUserFieldsFragment;
export type WidgetSession = WidgetSessionFieldsFragment;
export type ConnectionEvent = ConnectionEventsResult['connectionEvents'];
export type Provider = ProvidersResult['providers'][number];

export const TerraUserFields = graphql(`
  fragment TerraUserFields on TerraUser {
    userId
    provider
    active
    status
    scopes
    connectedAt
    updatedAt
  }
`);

export const WidgetSessionFields = graphql(`
  fragment WidgetSessionFields on WidgetSession {
    sessionId
    url
    expiresAt
    status
    provider
    failureReason
    alreadyConnected
  }
`);

export const ProvidersQuery = graphql(`
  query Providers {
    providers {
      name
      displayName
      sdkOnly
    }
  }
`);

export const ConnectedUsersQuery = graphql(`
  query ConnectedUsers {
    connectedUsers {
      ...TerraUserFields
    }
  }
`);

export const ConnectionEventsSubscription = graphql(`
  subscription ConnectionEvents {
    connectionEvents {
      type
      at
      terraUser {
        ...TerraUserFields
      }
    }
  }
`);

export const CreateWidgetSessionMutation = graphql(`
  mutation CreateWidgetSession($input: CreateWidgetSessionInput) {
    createWidgetSession(input: $input) {
      ...WidgetSessionFields
    }
  }
`);

export const WidgetSessionSubscription = graphql(`
  subscription WidgetSession($id: ID!) {
    widgetSession(id: $id) {
      ...WidgetSessionFields
    }
  }
`);

export const DisconnectUserMutation = graphql(`
  mutation DisconnectUser($userId: ID!) {
    disconnectUser(userId: $userId) {
      ...TerraUserFields
    }
  }
`);
