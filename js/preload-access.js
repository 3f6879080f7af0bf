'use strict';
// A worker forked with setupPrimary({ uid }) loads rs-cluster (the preload
// primary.js puts in NODE_OPTIONS) as that user. Where that user may not
// read it, as with a checkout under a 0700 directory, Node's error is about
// a file the app never named, and seldom says why: this says first, on the
// worker's stderr, what could not be loaded, from where, and why.

const fs = require('node:fs');
const path = require('node:path');

// Why `uid`:`gid` may not read `file`, or null. From the mode bits, as the
// kernel decides for a process without supplementary groups (a worker
// forked with a uid has dropped them): read on the file and search on every
// directory above it, as its owner, its group or another user.
function denied(file, uid, gid) {
  let need = 0o4;
  try {
    for (let p = file; ; p = path.dirname(p)) {
      const st = fs.statSync(p);
      const bits = st.uid === uid ? st.mode >> 6 : st.gid === gid ? st.mode >> 3 : st.mode;
      if ((bits & need) === 0) {
        const mode = (st.mode & 0o7777).toString(8).padStart(4, '0');
        return `EACCES: uid ${uid}, gid ${gid} may not ${need === 0o4 ? 'read' : 'enter'} ${p} (mode ${mode}, owner ${st.uid}:${st.gid})`;
      }
      if (p === path.dirname(p)) return null;
      need = 0o1;
    }
  } catch {
    // Gone: Node's own error says so.
    return null;
  }
}

// Called once `child` is forked with `stdio` and `settings`; `file` is the preload.
/**
 * @param {string} file
 * @param {import('node:child_process').ChildProcess} child
 * @param {any} stdio
 * @param {{ uid?: number, gid?: number }} settings
 */
function explainDeniedPreload(file, child, stdio, { uid, gid }) {
  if (!Number.isInteger(uid) || uid === 0 || process.getuid?.() !== 0) return;
  const why = denied(file, uid, Number.isInteger(gid) ? gid : process.getgid());
  if (why === null) return;
  const text = `rs-cluster could not be loaded from ${file}: ${why}\n`;
  const stderr = stdio[2];
  if (child.stderr) child.stderr.unshift(Buffer.from(text));
  else if (stderr === 'inherit') process.stderr.write(text);
  else if (Number.isInteger(stderr)) fs.writeSync(stderr, text);
  else if (stderr && typeof stderr.write === 'function') stderr.write(text);
}

module.exports = { explainDeniedPreload };
