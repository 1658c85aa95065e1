import { createApp, buildEnvironment } from '../lib/app';
const stage = (process.argv[2] ?? 'experiment') as 'experiment' | 'production';
const app = createApp({ outdir: `/tmp/synth-${stage}` });
buildEnvironment(app, stage === 'experiment' ? { stage, experiment: 'demo' } : { stage });
app.synth();
console.log('ok');
