/**
 * The file piscina loads: the CommonJS bundle of worker.ts (see package.json "build"). A
 * CommonJS worker never starts node's ES module loader, which cost each thread ~10 ms as the
 * pool started; and on Node 20 a require() of an ES module can abort the process on a native
 * assertion when module hooks are installed (tap's, a user's NODE_OPTIONS --import).
 */
import type { Task } from './tasks.js';
import type { BackendSpec } from '../store/backend/backend.js';

type Run = (message: { task: Task; backend: BackendSpec }) => Promise<unknown>;

module.exports = (require('./worker.cjs') as { default: Run }).default;
