// profile.mjs preloads this into the server (node --require) when run with METERING_PROFILE_HEAP=1, and sets the
// server's METERING_PROFILE_HEAP to the file to write. It samples every allocation (collected objects included,
// unlike --heap-prof) from the first SIGUSR2 it gets to the second, and then writes the profile (a V8 heap
// profile, as Chrome DevTools reads it) to that file.
const { Session } = require('node:inspector');
const { renameSync, writeFileSync } = require('node:fs');

const file = process.env.METERING_PROFILE_HEAP;
const session = new Session();
session.connect();
const post = (method, params) => new Promise((resolve, reject) => session.post(method, params, (err, out) => (err ? reject(err) : resolve(out))));
let sampling = false;
process.on('SIGUSR2', async () => {
  if (!sampling) {
    sampling = true;
    await post('HeapProfiler.startSampling', { samplingInterval: 4096, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
    return;
  }
  const { profile } = await post('HeapProfiler.stopSampling');
  writeFileSync(`${file}.part`, JSON.stringify(profile));
  renameSync(`${file}.part`, file); // whole when it appears
  sampling = false;
});
