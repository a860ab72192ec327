// A real OpenID Connect provider for the single sign-on tests: `oidc-provider` (the certified
// Node.js implementation, from the npm registry, installed by scripts/node/ensure-node.sh), with its
// own development login and consent pages (any login and password sign in; the login picks the
// account). Accounts and clients come from the environment:
//
//   OIDC_PROVIDER_MODULE  path of oidc-provider's lib/index.js
//   OIDC_PORT             port on 127.0.0.1 (the issuer is http://127.0.0.1:PORT)
//   OIDC_CLIENTS          JSON list of client metadata (client_id, client_secret, redirect_uris, ...)
//   OIDC_ACCOUNTS_FILE    a JSON file {login: {email, name, groups}}, read at every sign-in
//
// Prints "listening <issuer>" on stdout once it serves.
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

const { default: Provider } = await import(pathToFileURL(process.env.OIDC_PROVIDER_MODULE).href);
const port = Number(process.env.OIDC_PORT);
const issuer = `http://127.0.0.1:${port}`;
const accounts = () => JSON.parse(readFileSync(process.env.OIDC_ACCOUNTS_FILE, 'utf8'));

const provider = new Provider(issuer, {
  clients: JSON.parse(process.env.OIDC_CLIENTS || '[]'),
  cookies: { keys: ['poggio-test-cookie-key'] },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name'],
    groups: ['groups'],
  },
  scopes: ['openid', 'offline_access', 'email', 'profile', 'groups'],
  conformIdTokenClaims: false, // the scopes' claims in the ID token, as Entra ID and Okta can be set to
  pkce: { required: () => true },
  features: { devInteractions: { enabled: true } },
  async findAccount(ctx, id) {
    const account = accounts()[id];
    if (!account) return undefined;
    return {
      accountId: id,
      async claims() {
        return { sub: id, email: account.email, email_verified: true, name: account.name || id,
                 groups: account.groups || [] };
      },
    };
  },
});
provider.proxy = false;
provider.on('server_error', (ctx, err) => console.error('server_error', err));

const server = provider.listen(port, '127.0.0.1', () => {
  console.log(`listening ${issuer}`);
});
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
