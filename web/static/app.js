// tiercache pages: sign in and sign out through the tRPC API (auth.login, auth.logout).
// Served as app.<hash>.js (immutable); no inline script anywhere (the pages' CSP forbids it).
'use strict';

async function trpcMutation(path, input) {
  const r = await fetch(`/trpc/${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: input === undefined ? '' : JSON.stringify(input),
    credentials: 'same-origin',
    cache: 'no-store',
  });
  let body = null;
  try { body = await r.json(); } catch { /* not JSON */ }
  return { status: r.status, body };
}

document.addEventListener('DOMContentLoaded', () => {
  const form = document.getElementById('login-form');
  if (form) {
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const err = document.getElementById('login-error');
      err.hidden = true;
      const { status, body } = await trpcMutation('auth.login', {
        email: form.email.value,
        password: form.password.value,
      });
      if (status === 200) {
        // replace: the signed-out page is not kept in this tab's history
        location.replace('/dashboard');
        return;
      }
      err.textContent = (body && body.error && body.error.message) || `sign-in failed (${status})`;
      err.hidden = false;
    });
  }
  const logout = document.getElementById('logout');
  if (logout) {
    logout.addEventListener('click', async () => {
      await trpcMutation('auth.logout');
      location.replace('/login');
    });
  }
});
