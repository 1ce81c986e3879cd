// The npm code the web client uses, bundled by scripts/build-web-vendor.mjs into
// web/vendor/vendor.js (generated, git-ignored; never committed). GPL-3.0: see README.md.
export {
  KeyHelper, SessionBuilder, SessionCipher, SignalProtocolAddress, FingerprintGenerator, Direction,
} from '@privacyresearch/libsignal-protocol-typescript';
export { default as qrcode } from 'qrcode-generator';
