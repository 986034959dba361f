/** `npm start`: the whole service (API, workers, dispatcher) in one process. */
import { runService } from './cli.ts';

await runService(['api', 'worker']);
