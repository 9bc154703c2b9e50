// A real OpenID Connect provider on loopback for the tests
// (tests/compat/test_oidc.py): the certified `oidc-provider` package with its
// development login pages (any login name and password, then a consent
// prompt). Test use only: nothing here is fit for production.
//
//   node provider.mjs PORT
//
// Environment:
//   TILED_TEST_OIDC_NODE_MODULES  the node_modules holding oidc-provider
//                                 (installed from package-lock.json by
//                                 scripts/test with `npm ci --prefix`)
//   OIDC_CLIENTS  JSON list of confidential clients:
//                 [{"client_id", "client_secret", "redirect_uris": [...]}]
//
// The issuer is http://127.0.0.1:PORT; the `sub` of a user is the login
// name typed on the dev login page. Prints "listening on URL" when ready.

import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const port = Number(process.argv[2] || process.env.OIDC_PORT);
if (!Number.isInteger(port) || port <= 0) {
  console.error('usage: node provider.mjs PORT');
  process.exit(2);
}
const modules = process.env.TILED_TEST_OIDC_NODE_MODULES;
if (!modules) {
  console.error('set TILED_TEST_OIDC_NODE_MODULES to the node_modules holding oidc-provider');
  process.exit(2);
}
const { default: Provider } = await import(
  pathToFileURL(join(modules, 'oidc-provider', 'lib', 'index.js')).href
);

const clients = JSON.parse(process.env.OIDC_CLIENTS || '[]').map((c) => ({
  client_id: c.client_id,
  client_secret: c.client_secret,
  redirect_uris: c.redirect_uris,
  grant_types: ['authorization_code', 'refresh_token'],
  response_types: ['code'],
  token_endpoint_auth_method: c.token_endpoint_auth_method || 'client_secret_basic',
}));

const issuer = `http://127.0.0.1:${port}`;
const provider = new Provider(issuer, {
  clients,
  // Any login name is an account, and its name is its `sub`.
  async findAccount(ctx, id) {
    return {
      accountId: id,
      async claims() {
        return { sub: id };
      },
    };
  },
  features: {
    devInteractions: { enabled: true },
  },
  // Upstream Tiled sends no PKCE; confidential clients need none.
  pkce: { required: () => false },
  // Fixed cookie keys: this provider only ever lives for one test run.
  cookies: { keys: ['tiled-rs-test-oidc-provider'] },
});
// Plain http on loopback: cookies without the `secure` flag are fine here.
provider.proxy = false;

const server = provider.listen(port, '127.0.0.1', () => {
  console.log(`listening on ${issuer}`);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
