// The login page (a UI bound to a LAN address with a password): posts the
// password as JSON; the answer sets the session cookie, then on to the page.

const form = document.getElementById('login-form');
const input = document.getElementById('password');
const result = document.getElementById('login-result');
const button = form.querySelector('button[type=submit]');

form.addEventListener('submit', async (e) => {
  e.preventDefault();
  result.textContent = '';
  button.disabled = true;
  try {
    const response = await fetch('/api/login', {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ password: input.value }),
    });
    if (response.ok) {
      window.location.replace('/');
      return;
    }
    let message = '';
    try {
      const data = await response.json();
      if (data && typeof data.error === 'string') message = data.error;
    } catch {
      // No JSON body: fall back to the status below.
    }
    if (!message) {
      if (response.status === 401) message = 'Wrong password.';
      else if (response.status === 429) message = 'Too many attempts: wait a minute, then try again.';
      else message = `Sign-in failed (HTTP ${response.status}).`;
    }
    result.textContent = message;
    input.select();
  } catch {
    result.textContent = 'The node did not answer. Is it still running?';
  } finally {
    button.disabled = false;
  }
});
