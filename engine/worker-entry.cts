/**
 * The file piscina loads. Piscina require()s its worker first; on Node 20 a require() of an
 * ES module can abort the process on a native assertion when module hooks are installed
 * (tap's, a user's NODE_OPTIONS --import). A CommonJS entry that import()s the worker
 * keeps every worker on the ES module loader.
 */
import type { Task } from './tasks.js';

type Run = (message: { task: Task; packsDir: string }) => Promise<unknown>;

let worker: Promise<Run> | null = null;

module.exports = async function run(message: { task: Task; packsDir: string }): Promise<unknown> {
  worker ??= import('./worker.js').then((m: { default: Run }) => m.default);
  return (await worker)(message);
};
