// A small app as a user writes it: import the package, init, sign in, show
// the user. Built by esbuild (the inline entry) and Vite (the default
// entry) in browser.test.mjs; the page reads the API origin from its query.
import { init, AuthClient } from '@paywall-auth/wasm';

async function main() {
  const q = new URLSearchParams(location.search);
  await init();
  const auth = new AuthClient({ paywallId: q.get('pid'), apiOrigin: q.get('api') });
  const session = await auth.signInAnonymously();
  document.title = `signed-in:${session.user.id}`;
}

main().catch((e) => {
  document.title = `failed:${e.code ?? e.name}:${e.message}`;
});
