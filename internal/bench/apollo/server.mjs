// The Apollo Server peer of the createWidgetSession benchmark (issue 16): what a team would
// build instead of terragate for the one mutation, with no store. It verifies the end user's
// JWT as terragate does, calls Terra and answers the same selection, so the load program
// sends both the same request body.
//
//   TERRA_URL=... TERRA_DEV_ID=... TERRA_API_KEY=... AUTH_JWT_SECRET=... PORT=0 node server.mjs
//
// It prints "listening on http://127.0.0.1:PORT" once it accepts requests (PORT=0: any free
// port), which is how the Go side learns the address.
import { ApolloServer } from '@apollo/server';
import { startStandaloneServer } from '@apollo/server/standalone';
import { GraphQLError, GraphQLScalarType } from 'graphql';
import http from 'node:http';
import { jwtVerify } from 'jose';

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is required`);
  return v;
};
const terraURL = env('TERRA_URL');
const terraHeaders = {
  'dev-id': env('TERRA_DEV_ID'),
  'x-api-key': env('TERRA_API_KEY'),
  'Content-Type': 'application/json',
};
// Imported once: handed the raw bytes, jose imports the key again on every verification.
const secret = await crypto.subtle.importKey(
  'raw', new TextEncoder().encode(env('AUTH_JWT_SECRET')),
  { name: 'HMAC', hash: 'SHA-256' }, false, ['verify'],
);

// terragate's types for this mutation and its selection, nothing more. GraphQL requires a
// query type; the peer has nothing to read.
const typeDefs = `#graphql
  scalar Time

  type Query {
    ok: Boolean!
  }

  type Mutation {
    createWidgetSession(input: CreateWidgetSessionInput): WidgetSession!
  }

  input CreateWidgetSessionInput {
    providers: [String!]
    language: String
  }

  type WidgetSession {
    sessionId: ID!
    url: String!
    expiresAt: Time!
  }
`;

// authenticate checks the bearer token as terragate does (HS256 with the shared secret, exp
// required, 30 s of clock skew on exp and nbf, a subject of 1 to 255 characters) and
// returns the end user's id, or the reason there is none. Like terragate it never rejects
// the request itself: the resolver turns the reason into a GraphQL error.
async function authenticate(header) {
  const token = /^\s*bearer\s+(\S+)\s*$/i.exec(header ?? '')?.[1];
  if (!token) return { reason: 'missing bearer token' };
  try {
    const { payload } = await jwtVerify(token, secret, {
      algorithms: ['HS256'],
      requiredClaims: ['exp'],
      clockTolerance: 30,
    });
    const sub = typeof payload.sub === 'string' ? payload.sub.trim() : '';
    if (sub === '' || sub.length > 255) return { reason: 'token subject invalid' };
    return { user: sub };
  } catch (err) {
    return { reason: err.code === 'ERR_JWT_EXPIRED' ? 'token expired' : 'token invalid' };
  }
}

// Terra (here the emulator, over plain HTTP) is called through node:http with a keep-alive agent holding a connection for each
// request in flight, as terragate's Go client does. Node's fetch (undici) served less than
// half the requests per second on the same machine, which would flatter terragate.
const terraAgent = new http.Agent({ keepAlive: true, maxSockets: 64 });

// createTerraSession posts body to Terra's widget session endpoint and returns its answer.
function createTerraSession(body) {
  const payload = JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = http.request(`${terraURL}/api/widget/session`, {
      method: 'POST',
      agent: terraAgent,
      headers: { ...terraHeaders, 'Content-Length': Buffer.byteLength(payload) },
      timeout: 10_000, // terragate's Terra timeout
    }, (resp) => {
      const chunks = [];
      resp.on('data', (c) => chunks.push(c));
      resp.on('error', reject);
      resp.on('end', () => {
        if (resp.statusCode !== 200) {
          reject(new GraphQLError(`Terra answered ${resp.statusCode}`, { extensions: { code: 'UPSTREAM_ERROR' } }));
          return;
        }
        try {
          resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')));
        } catch (err) {
          reject(err);
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error('Terra did not answer in time')));
    req.on('error', reject);
    req.end(payload);
  });
}

const resolvers = {
  Time: new GraphQLScalarType({
    name: 'Time',
    serialize: (d) => d.toISOString(),
  }),
  Query: { ok: () => true },
  Mutation: {
    async createWidgetSession(_, { input }, { user, reason }) {
      if (!user) {
        throw new GraphQLError(`not signed in: ${reason}`, { extensions: { code: 'UNAUTHENTICATED' } });
      }
      const ws = await createTerraSession({
        reference_id: user,
        providers: input?.providers?.join(',') || undefined,
        language: input?.language || undefined,
      });
      return {
        sessionId: ws.session_id,
        url: ws.url,
        expiresAt: new Date(Date.now() + ws.expires_in * 1000),
      };
    },
  },
};

const server = new ApolloServer({ typeDefs, resolvers });
const { url } = await startStandaloneServer(server, {
  listen: { host: '127.0.0.1', port: Number(process.env.PORT ?? 4000) },
  context: async ({ req }) => authenticate(req.headers.authorization),
});
console.log(`listening on ${new URL(url).origin}`);
