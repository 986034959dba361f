# syntax=docker/dockerfile:1
# longhaul runs its TypeScript sources directly (Node 24 type stripping): there is no build step, so
# the first stage only installs the production dependencies and the second adds the sources. The client
# and SDK packages are npm workspaces the service imports from source, so their manifests come first too.

FROM node:24-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
COPY clients/typescript/package.json ./clients/typescript/
COPY packages/sdk/package.json ./packages/sdk/
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

FROM node:24-bookworm-slim
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=3000 \
    LONGHAUL_DATA_DIR=/data
WORKDIR /app
# node_modules, the workspaces' own node_modules and their manifests.
COPY --from=deps /app ./
COPY bin ./bin
COPY sql ./sql
COPY src ./src
COPY clients/typescript/src ./clients/typescript/src
COPY packages/sdk/src ./packages/sdk/src
# The embedded PostgreSQL (used only when DATABASE_URL is unset) and the default key live in /data.
RUN mkdir -p /data && chown node:node /data
USER node
VOLUME ["/data"]
EXPOSE 3000
# The slim image has no curl: Node's fetch asks /healthz.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 3000) + '/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# `start` runs every role; docker-compose.yml runs `api` and `worker` as separate services instead.
CMD ["node", "bin/longhaul.js", "start"]
