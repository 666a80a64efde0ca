// The socket.io chat server of the Wallarm scenario (polling and WebSocket transports), as the
// proxy's upstream: listens on 127.0.0.1 (port 0), echoes every `chat` event back to its
// sender, and reports on stdout, one JSON line each: {"port"}, {"connected"},
// {"received": message}, {"disconnected": reason}.
// Exits when its stdin closes (the test is over).
'use strict';

const { createServer } = require('http');
const { Server } = require('socket.io');

const report = (event) => console.log(JSON.stringify(event));
const httpServer = createServer();
const io = new Server(httpServer, { transports: ['polling', 'websocket'] });

io.on('connection', (socket) => {
  report({ connected: socket.id });
  socket.on('chat', (message) => {
    report({ received: message });
    socket.emit('chat', message);
  });
  socket.on('disconnect', (reason) => report({ disconnected: reason }));
});

httpServer.listen(0, '127.0.0.1', () => report({ port: httpServer.address().port }));
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
