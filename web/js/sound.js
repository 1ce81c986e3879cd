// sound: the new-message sound, made with WebAudio (two short sine notes), so that no audio
// file is needed. Browsers start audio only after a user gesture: the context is made on the
// first click or key press, and until then a message arrives in silence.
const NOTES = [[880, 0], [1318.5, 0.11]]; // A5 then E6, seconds from the start
const LENGTH = 0.16; // each note's length, s
const VOLUME = 0.12;

const OFF_KEY = 'tern.sound.off'; // this browser's choice (Settings → Notifications), kept across restarts

let ctx = null;

/** Whether new messages make the sound in this browser (on unless turned off). */
export function soundEnabled() {
  try {
    return localStorage.getItem(OFF_KEY) !== '1';
  } catch {
    return true;
  }
}

export function setSoundEnabled(on) {
  try {
    if (on) localStorage.removeItem(OFF_KEY);
    else localStorage.setItem(OFF_KEY, '1');
  } catch { /* storage refused: the choice lasts as long as the page */ }
}

function unlock() {
  if (ctx || !(window.AudioContext || window.webkitAudioContext)) return;
  try {
    ctx = new (window.AudioContext || window.webkitAudioContext)();
  } catch {
    ctx = null;
  }
}
addEventListener('pointerdown', unlock, { capture: true, passive: true });
addEventListener('keydown', unlock, { capture: true });

/** Plays the sound (never throws; silent until the page was interacted with, and when turned off). */
export function ping() {
  if (!ctx || !soundEnabled()) return false;
  try {
    if (ctx.state === 'suspended') ctx.resume();
    const t0 = ctx.currentTime + 0.01;
    for (const [freq, at] of NOTES) {
      const osc = ctx.createOscillator();
      const gain = ctx.createGain();
      osc.type = 'sine';
      osc.frequency.value = freq;
      // a quick attack and an exponential fade: no click at either end
      gain.gain.setValueAtTime(0.0001, t0 + at);
      gain.gain.exponentialRampToValueAtTime(VOLUME, t0 + at + 0.015);
      gain.gain.exponentialRampToValueAtTime(0.0001, t0 + at + LENGTH);
      osc.connect(gain).connect(ctx.destination);
      osc.start(t0 + at);
      osc.stop(t0 + at + LENGTH + 0.02);
    }
    return true;
  } catch {
    return false;
  }
}
