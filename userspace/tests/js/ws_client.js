// Echo through the proxy with the `ws` client: the messages of messages.js one at a time, each
// echoed intact, then the XSS message, which must close the socket (the test checks the code).
// Prints one JSON line: {"echoed", "deflate", "close_code", "close_reason"}.
'use strict';

const WebSocket = require('ws');
const { COUNT, XSS, message } = require('./messages');

const url = process.argv[2];
const fail = (why) => {
  console.error(`ws_client: ${why}`);
  process.exit(1);
};
setTimeout(() => fail('timed out'), 30000).unref();

const ws = new WebSocket(url);
let echoed = 0;
let sentXss = false;

function sendNext() {
  if (echoed < COUNT) {
    ws.send(message(echoed));
  } else {
    sentXss = true;
    ws.send(XSS);
  }
}

ws.on('open', sendNext);
ws.on('message', (data, isBinary) => {
  if (sentXss) fail('the XSS message was echoed');
  const expected = message(echoed);
  const same = isBinary
    ? Buffer.isBuffer(expected) && expected.equals(data)
    : typeof expected === 'string' && data.toString() === expected;
  if (!same) fail(`echo ${echoed} differs`);
  echoed += 1;
  sendNext();
});
ws.on('close', (code, reason) => {
  console.log(
    JSON.stringify({
      echoed,
      deflate: (ws.extensions || '').includes('permessage-deflate'),
      close_code: code,
      close_reason: reason.toString(),
    })
  );
  process.exit(0);
});
ws.on('error', (err) => fail(`error: ${err.message}`));
