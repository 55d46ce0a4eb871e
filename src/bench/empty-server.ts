// The baseline of the write benchmark: the site node's HTTP stack (fastify, its JSON body parser,
// the same body and parameter limits) with one route, `PUT /v1/tables/:table/items/:key`, that
// parses the body and answers a write-sized JSON object without touching any store. Runs as its
// own process so that it competes for CPU the way a site node does:
// `node dist/bench/empty-server.js [--port P]` prints `listening <port>` once it accepts requests.
import { pathToFileURL } from 'node:url';
import Fastify, { type FastifyInstance } from 'fastify';
import { limits } from '../limits.js';

export function buildEmptyServer(): FastifyInstance {
  const app = Fastify({
    logger: false,
    bodyLimit: limits.requestBodyBytesMax,
    routerOptions: { maxParamLength: 4 * limits.keyBytesMax },
    return503OnClosing: true,
    forceCloseConnections: false,
  });
  let seq = 0;
  app.put('/v1/tables/:table/items/:key', async (req, reply) => {
    const { key } = req.params as { table: string; key: string };
    if (typeof req.body !== 'object' || req.body === null || Array.isArray(req.body))
      return reply.code(400).send({ status: 400, detail: 'the body must be a JSON object' });
    seq += 1;
    reply.header('etag', `"${seq.toString(16).padStart(16, '0')}-empty"`);
    return { key, version: `${seq.toString(16).padStart(16, '0')}-empty`, dot: `empty:${seq}`, origin: 'empty' };
  });
  return app;
}

async function main(argv: string[]): Promise<void> {
  const portFlag = argv.indexOf('--port');
  const port = portFlag === -1 ? 0 : Number(argv[portFlag + 1]);
  if (!Number.isInteger(port) || port < 0 || port > 65_535) throw new Error(`--port: expected 0..65535, got ${argv[portFlag + 1]}`);
  const app = buildEmptyServer();
  await app.listen({ host: '127.0.0.1', port });
  const address = app.server.address();
  const bound = typeof address === 'object' && address !== null ? address.port : port;
  process.stdout.write(`listening ${bound}\n`);
  const shutdown = () => void app.close().then(() => process.exit(0));
  process.once('SIGTERM', shutdown);
  process.once('SIGINT', shutdown);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await main(process.argv.slice(2));
}
