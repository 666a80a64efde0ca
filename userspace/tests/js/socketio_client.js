// A socket.io chat client through the proxy, on one transport (argument 2: "websocket" or
// "polling"): one benign chat message, which must come back, then an XSS one, after which the
// client must be disconnected without an echo. Prints one JSON line:
// {"echoed", "disconnect_reason", "close_code"} (close_code: the WebSocket close code, if any).
'use strict';

const { io } = require('socket.io-client');

const BENIGN = 'hello everyone, how are you?';
const XSS = '<img src=x onerror=alert(1)>';
const [url, transport] = process.argv.slice(2);
const fail = (why) => {
  console.error(`socketio_client: ${why}`);
  process.exit(1);
};
setTimeout(() => fail('timed out'), 20000).unref();

const socket = io(url, { transports: [transport], reconnection: false, timeout: 5000 });
let echoed = null;

socket.on('connect', () => socket.emit('chat', BENIGN));
socket.on('chat', (message) => {
  if (echoed !== null) fail(`a second echo: ${JSON.stringify(message)}`);
  echoed = message;
  socket.emit('chat', XSS);
});
socket.on('disconnect', (reason, details) => {
  console.log(
    JSON.stringify({
      echoed,
      disconnect_reason: reason,
      close_code: details && details.context ? details.context.code ?? null : null,
    })
  );
  process.exit(0);
});
socket.on('connect_error', (err) => fail(`connect_error: ${err.message}`));
