// login: the register / log-in screen. One form, two modes; the server's own error message is
// shown (as text) when it refuses.
import * as api from './api.js';
import { el, deviceLabel } from './util.js';

const USER_RE = /^[a-z0-9_.-]{3,32}$/;

/** Renders into root; resolves onSession({user, device_id, token}) on success. */
export function renderLogin(root, onSession, notice = '') {
  let mode = 'login';
  const errBox = el('p', { class: 'form-error', id: 'login-error', role: 'alert' });
  const userIn = el('input', { id: 'username', name: 'username', autocomplete: 'username', required: true, autocapitalize: 'none', spellcheck: 'false', minlength: '3', maxlength: '32', 'aria-describedby': 'username-hint' });
  const passIn = el('input', { id: 'password', name: 'password', type: 'password', autocomplete: 'current-password', required: true, minlength: '8', maxlength: '1024', 'aria-describedby': 'password-hint' });
  const submit = el('button', { type: 'submit', class: 'primary', id: 'login-submit' }, 'Log in');
  const title = el('h1', { id: 'login-title' }, 'Log in to tern');
  const passHint = el('p', { class: 'hint', id: 'password-hint' }, '');
  const switchBtn = el('button', { type: 'button', class: 'link', id: 'login-switch' }, 'Create an account');
  const switchText = el('span', {}, 'New to tern? ');

  function setMode(m) {
    mode = m;
    const reg = m === 'register';
    title.textContent = reg ? 'Create your tern account' : 'Log in to tern';
    submit.textContent = reg ? 'Create account' : 'Log in';
    passIn.autocomplete = reg ? 'new-password' : 'current-password';
    passHint.textContent = reg ? 'At least 8 characters.' : '';
    switchText.textContent = reg ? 'Already have an account? ' : 'New to tern? ';
    switchBtn.textContent = reg ? 'Log in' : 'Create an account';
    errBox.textContent = '';
  }

  const form = el('form', { class: 'login-form', 'aria-labelledby': 'login-title', novalidate: true },
    title,
    notice ? el('p', { class: 'notice', role: 'status' }, notice) : null,
    el('label', { for: 'username' }, 'Username'),
    userIn,
    el('p', { class: 'hint', id: 'username-hint' }, '3–32 letters, digits, or . _ -'),
    el('label', { for: 'password' }, 'Password'),
    passIn,
    passHint,
    errBox,
    submit,
    el('p', { class: 'switch' }, switchText, switchBtn));

  switchBtn.addEventListener('click', () => {
    setMode(mode === 'login' ? 'register' : 'login');
    userIn.focus();
  });

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    errBox.textContent = '';
    const username = userIn.value.trim().toLowerCase();
    const password = passIn.value;
    if (!USER_RE.test(username)) {
      errBox.textContent = 'A username is 3 to 32 characters: letters, digits, dot, underscore or dash.';
      userIn.setAttribute('aria-invalid', 'true');
      userIn.focus();
      return;
    }
    userIn.removeAttribute('aria-invalid');
    if (password.length < 8) {
      errBox.textContent = 'The password must have at least 8 characters.';
      passIn.setAttribute('aria-invalid', 'true');
      passIn.focus();
      return;
    }
    passIn.removeAttribute('aria-invalid');
    submit.disabled = true;
    submit.setAttribute('aria-busy', 'true');
    try {
      const r = mode === 'register' ? await api.register(username, password, deviceLabel()) : await api.login(username, password, deviceLabel());
      onSession({ user: r.user, device_id: r.device_id, token: r.token });
    } catch (e) {
      if (e.code === 'username_taken') errBox.textContent = `The username “${username}” is taken. Try another, or log in.`;
      else if (e.code === 'bad_credentials') errBox.textContent = 'Wrong username or password.';
      else if (e.code === 'too_many_devices') errBox.textContent = 'This account is signed in on too many devices. Log out on one of them first.';
      else errBox.textContent = e.message;
      submit.disabled = false;
      submit.removeAttribute('aria-busy');
    }
  });

  root.replaceChildren(el('main', { class: 'login' },
    el('div', { class: 'login-card' },
      el('div', { class: 'brand' }, el('img', { src: 'icon.svg', alt: '', width: 40, height: 40 }), el('span', {}, 'tern')),
      form,
      el('p', { class: 'fine' }, 'Your messages are kept in this browser. The server keeps them only until they are delivered.'))));
  userIn.focus();
}
