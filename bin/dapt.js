#!/usr/bin/env node
// `npx dapt ...`: runs cli/dapt.ts through tsx (the project ships TypeScript, not a build).
require('tsx/cjs');
const { main } = require('../cli/dapt.ts');
const { defaultClients } = require('../cli/train.ts');
main(process.argv.slice(2), { out: (l) => console.log(l), err: (l) => console.error(l), clients: defaultClients }).then(
  (code) => {
    process.exitCode = code;
  },
);
