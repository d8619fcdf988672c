// An OpenTelemetry JS SDK service, the kind traceshim must interoperate with.
//   node app.js server PORT SPANFILE        serve until SIGTERM
//   node app.js client URL SPANFILE         one GET, then exit
// Every span the SDK ends is appended to SPANFILE as one JSON line.
'use strict';
const fs = require('fs');
const [mode, arg, spanFile] = process.argv.slice(2);

const { NodeTracerProvider } = require('@opentelemetry/sdk-trace-node');
const { SimpleSpanProcessor } = require('@opentelemetry/sdk-trace-base');
const { registerInstrumentations } = require('@opentelemetry/instrumentation');
const { HttpInstrumentation } = require('@opentelemetry/instrumentation-http');

class FileExporter {
  export(spans, done) {
    for (const s of spans) {
      const ctx = s.spanContext();
      const parent = s.parentSpanContext ? s.parentSpanContext.spanId : s.parentSpanId;
      fs.appendFileSync(spanFile, JSON.stringify({
        traceId: ctx.traceId, spanId: ctx.spanId, parentSpanId: parent || '',
        kind: s.kind, name: s.name, attributes: s.attributes,
      }) + '\n');
    }
    done({ code: 0 });
  }
  shutdown() { return Promise.resolve(); }
}

const provider = new NodeTracerProvider({ spanProcessors: [new SimpleSpanProcessor(new FileExporter())] });
provider.register();
registerInstrumentations({ instrumentations: [new HttpInstrumentation()] });
const http = require('http');

if (mode === 'server') {
  const server = http.createServer((req, res) => {
    res.writeHead(req.url === '/nope' ? 404 : 200, { 'Content-Type': 'text/plain' });
    res.end('node says hello\n');
  });
  server.listen(Number(arg), '127.0.0.1', () => console.log('listening'));
  process.on('SIGTERM', () => server.close(() => provider.shutdown().then(() => process.exit(0))));
} else {
  http.get(arg, (res) => {
    res.resume();
    res.on('end', () => provider.shutdown().then(() => process.exit(res.statusCode === 200 ? 0 : 1)));
  }).on('error', (e) => { console.error(e.message); process.exit(2); });
}
