import { holdSignals } from './held-signals.js';

// Before anything else loads: src/held-signals.ts says why. The import below is dynamic so that nothing of the gateway is
// loaded (a static import is, before any line of this module runs).
holdSignals();
await import('./serve.js');
