// The message sequence every real client sends through the proxy (tests/py/messages.py builds
// the same one): 100 messages alternating text and binary, every tenth one longer than 1 KiB so
// that clients which compress only large messages compress some, then an XSS message padded
// past 1 KiB as well.
'use strict';

const PADDING = 'lorem ipsum dolor sit amet '.repeat(50);

function message(i) {
  if (i % 2 === 0) {
    return `message ${i}${i % 10 === 0 ? ' ' + PADDING : ''}`;
  }
  const length = i % 10 === 1 ? 1500 : 16 + i;
  return Buffer.from(Array.from({ length }, (_, j) => (i * 7 + j * 13) % 256));
}

const COUNT = 100;
const XSS = `<script>alert(document.cookie)</script> ${PADDING}`;

module.exports = { COUNT, XSS, message };
