// The chat's page script. It opens a WebSocket to the server the page came
// from and speaks the chat's own lines over it, one text message per line
// both ways: what it sends is what an nc user would type, and it shows
// what an nc user would read. The room and its users, on the left, are
// read from the server's own notices (`* you are in #ROOM`, `* in #ROOM:
// a, b`, `* NAME joined #ROOM`, ...): there is no protocol of its own.
'use strict';

const $ = (id) => document.getElementById(id);
const log = $('log');
const input = $('input');
const prompt = $('prompt');
const badge = $('state');
const roomTitle = $('room');
const roomList = $('rooms');
const userList = $('users');
const usersTitle = $('users-title');

// The server's longest line, in bytes: a longer message fails the
// connection, so the page refuses to send one.
const MAX_LINE = 4096;
// Lines kept on the page; older ones go.
const MAX_SHOWN = 1000;
// Reconnecting: the first wait, doubled after each failed try up to the
// longest, and each wait drawn between half of it and all of it, so that
// the browsers of a restarted server do not all come back at once.
const FIRST_RETRY_MS = 500;
const LONGEST_RETRY_MS = 15000;

let socket = null;
let me = null; // our name, once the server has said hello
let room = null; // the room we are in
const rooms = new Set(); // the rooms we have been in, to go back to
let users = []; // who is in our room, in the order `/who` lists them
let listing = false; // the last line was part of a `/who` answer
let retries = 0;
let retryTimer = null;
let farewell = false; // the server said goodbye: no reconnecting by itself
let rejoin = null; // the name and room to take again after a reconnect
const sent = []; // what was typed, for the arrow keys
let recalled = 0;

function connect() {
  clearTimeout(retryTimer);
  farewell = false;
  setState('connecting', 'connecting…');
  const scheme = location.protocol === 'https:' ? 'wss://' : 'ws://';
  const ws = new WebSocket(scheme + location.host + '/');
  socket = ws;
  let opened = false;
  ws.addEventListener('open', () => {
    opened = true;
    retries = 0;
    setState('connected', 'connected');
  });
  ws.addEventListener('message', (event) => {
    if (typeof event.data === 'string') {
      heard(event.data);
    }
  });
  ws.addEventListener('close', (event) => {
    if (ws === socket) {
      closed(opened, event.code);
    }
  });
}

function closed(wasOpen, code) {
  socket = null;
  if (me) {
    rejoin = { nick: me, room };
  }
  me = null;
  setUsers([]);
  setPrompt();
  if (farewell) {
    setState('disconnected', 'disconnected · press Enter to reconnect');
    return;
  }
  if (wasOpen) {
    note(code === 1009 ? 'that line was too long: disconnected' : 'connection lost');
  }
  const longest = Math.min(LONGEST_RETRY_MS, FIRST_RETRY_MS * 2 ** retries);
  const wait = longest * (0.5 + Math.random() / 2);
  retries += 1;
  setState('disconnected', `reconnecting in ${Math.max(1, Math.round(wait / 1000))} s…`);
  retryTimer = setTimeout(connect, wait);
}

// A line from the server: what it changes, then the line itself.
function heard(line) {
  let m;
  const wasListing = listing;
  listing = false;
  if (line.startsWith('* welcome!')) {
    room = null;
    setRoom();
    if (rejoin) {
      send('/nick ' + rejoin.nick);
    }
  } else if ((m = /^\* hello (\S+), you are in #(\S+)$/.exec(line))) {
    me = m[1];
    enter(m[2]);
    if (rejoin && rejoin.room && rejoin.room !== room) {
      send('/join ' + rejoin.room);
    }
    rejoin = null;
    setState('connected', 'connected as ' + me);
  } else if ((m = /^\* you are in #(\S+)$/.exec(line))) {
    enter(m[1]);
  } else if ((m = /^\* in #(\S+): (.*)$/.exec(line))) {
    // A hundred names a line: the lines of one answer come together.
    if (m[1] === room) {
      setUsers((wasListing ? users : []).concat(m[2].split(', ')));
    }
    listing = true;
  } else if ((m = /^\* (\S+) joined #(\S+)$/.exec(line))) {
    if (m[2] === room && !users.includes(m[1])) {
      setUsers(users.concat([m[1]]));
    }
  } else if ((m = /^\* (\S+) left #(\S+)$/.exec(line))) {
    if (m[2] === room) {
      setUsers(users.filter((name) => name !== m[1]));
    }
  } else if (/^\* bye[,!]|^\* idle, bye$/.test(line)) {
    farewell = true;
  } else if (/^\* \S+ is taken, try another$/.test(line)) {
    rejoin = null;
  }
  show(line);
}

// Now in `name`: its users are asked for, and listed as they come.
function enter(name) {
  room = name;
  rooms.add(name);
  setUsers([]);
  setRoom();
  send('/who');
}

function send(line) {
  if (socket && socket.readyState === WebSocket.OPEN) {
    socket.send(line);
    return true;
  }
  return false;
}

// What the user typed. In the lobby, a plain line is the name to take.
$('say').addEventListener('submit', (event) => {
  event.preventDefault();
  const text = input.value;
  if (!socket) {
    if (farewell) {
      connect();
    }
    return;
  }
  if (text.trim() === '') {
    return;
  }
  if (new TextEncoder().encode(text).length > MAX_LINE) {
    note(`that line is too long: ${MAX_LINE} bytes at most`);
    return;
  }
  const line = me || text.startsWith('/') ? text : '/nick ' + text.trim();
  if (!send(line)) {
    return;
  }
  echo(line);
  sent.push(text);
  recalled = sent.length;
  input.value = '';
});

// The server does not send users their own lines back: the page shows
// them as the others see them.
function echo(line) {
  if (!me) {
    return;
  }
  let m;
  if (line.startsWith('//') || !line.startsWith('/')) {
    show(`<${me}> ${line.startsWith('//') ? line.slice(1) : line}`, 'mine');
  } else if ((m = /^\/me\s+(\S[\s\S]*)$/i.exec(line))) {
    show(`* ${me} ${m[1]}`, 'mine');
  } else if ((m = /^\/msg\s+(\S+)\s+(\S[\s\S]*)$/i.exec(line))) {
    show(`→ *${m[1]}* ${m[2]}`, 'mine private');
  }
}

// One line in the log, styled by its kind; the log follows new lines
// unless the user has scrolled up to read.
function show(line, extra) {
  const item = document.createElement('li');
  if (extra) {
    item.className = extra;
  }
  let m;
  if ((m = /^(<(\S+)>) ([\s\S]*)$/.exec(line))) {
    item.append(nick(m[1], m[2]), ' ' + m[3]);
  } else if ((m = /^(→ )?(\*(\S+)\*) ([\s\S]*)$/.exec(line))) {
    item.classList.add('private');
    item.append(m[1] || '', nick(m[2], m[3]), ' ' + m[4]);
  } else if (line.startsWith('* error')) {
    item.classList.add('error');
    item.textContent = line;
  } else if (line.startsWith('* ')) {
    item.classList.add('notice');
    item.textContent = line;
  } else {
    item.textContent = line;
  }
  item.title = new Date().toLocaleTimeString();
  const following = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
  log.append(item);
  while (log.childElementCount > MAX_SHOWN) {
    log.firstElementChild.remove();
  }
  if (following) {
    log.scrollTop = log.scrollHeight;
  }
}

// A note from the page itself, not from the server.
function note(text) {
  show('— ' + text, 'notice local');
}

// Colours for names: far enough apart to tell, dark enough to read.
const NICK_COLOURS = ['#c92a2a', '#2b8a3e', '#0b7285', '#862e9c', '#d9480f', '#7d5d00', '#a61e4d', '#5f3dc4'];

// A name as shown in a line, in a colour of its own (by an FNV-1a hash
// of the name as the server compares names, in any case).
function nick(shown, name) {
  const span = document.createElement('span');
  span.className = 'nick';
  span.textContent = shown;
  if (name !== me) {
    let hash = 2166136261;
    for (const c of name.toLowerCase()) {
      hash = Math.imul(hash ^ c.codePointAt(0), 16777619) >>> 0;
    }
    span.style.color = NICK_COLOURS[hash % NICK_COLOURS.length];
  }
  return span;
}

function setState(kind, text) {
  badge.className = 'state ' + kind;
  badge.textContent = text;
}

function setPrompt() {
  prompt.textContent = me || (rejoin && rejoin.nick) || 'nickname';
  if (me) {
    input.placeholder = `message #${room} · /me ACTION · /msg NAME TEXT · /join ROOM · /who`;
  } else if (socket) {
    input.placeholder = 'choose a nickname';
  } else {
    input.placeholder = farewell ? 'press Enter to reconnect' : 'waiting for the server…';
  }
}

function setRoom() {
  roomTitle.textContent = room ? '#' + room : 'lobby';
  roomList.replaceChildren(
    ...[...rooms].sort().map((name) =>
      item('#' + name, name === room ? 'current' : '', () => send('/join ' + name))
    )
  );
  setPrompt();
}

function setUsers(names) {
  users = names;
  usersTitle.textContent = room ? `In #${room} (${names.length})` : 'Users';
  userList.replaceChildren(
    ...names.map((name) =>
      item(name, name === me ? 'me' : '', () => {
        input.value = `/msg ${name} `;
      })
    )
  );
}

function item(text, className, onClick) {
  const li = document.createElement('li');
  li.textContent = text;
  if (className) {
    li.className = className;
  }
  li.addEventListener('click', () => {
    onClick();
    input.focus();
  });
  return li;
}

$('join').addEventListener('submit', (event) => {
  event.preventDefault();
  const field = $('join-input');
  const name = field.value.trim().replace(/^#/, '');
  if (name && send('/join ' + name)) {
    field.value = '';
    input.focus();
  }
});

// Up and down recall what was typed.
input.addEventListener('keydown', (event) => {
  if (event.key === 'ArrowUp' && recalled > 0) {
    recalled -= 1;
  } else if (event.key === 'ArrowDown' && recalled < sent.length) {
    recalled += 1;
  } else {
    return;
  }
  event.preventDefault();
  input.value = sent[recalled] ?? '';
});

// Typing anywhere types into the input.
document.addEventListener('keydown', (event) => {
  if (document.activeElement === document.body && !event.ctrlKey && !event.metaKey) {
    input.focus();
  }
});

setRoom();
connect();
input.focus();
