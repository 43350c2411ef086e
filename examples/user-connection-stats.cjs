'use strict'
/**
 * Per-user connection statistics: how many connections a user has, their ids, who is
 * online; send only to users who are online.
 *
 *   node examples/user-connection-stats.cjs       # PORT=3000
 *   curl -N http://localhost:3000/sse/alice       # in two terminals: alice has 2 connections
 *   curl http://localhost:3000/api/users/connections/stats
 *
 * Env: PORT (3000), STATS_LOG_MS (a periodic summary on stdout; 0: off, default 15000).
 * Requests to try: examples/user-connection-stats.api.http
 */
const express = require('express')
const { SSEKify } = require('ssekify')

const PORT = Number(process.env.PORT || 3000)
const HOST = process.env.HOST
const STATS_LOG_MS = Number(process.env.STATS_LOG_MS ?? 15000)

const sse = new SSEKify({ keepAliveMs: Number(process.env.SSE_KEEPALIVE_MS || 15000) })
sse.on('error', (err) => console.error('[ssekify]', err.message))

// Both events fire after the registry changed: the counts are already up to date.
sse.on('connect', ({ userId, connId }) => {
  console.log(`connect    ${userId} ${connId}: ${sse.getUserConnectionCount(userId)} connection(s), ${Object.keys(sse.getAllUsersConnectionStats()).length} user(s) online`)
})
sse.on('disconnect', ({ userId, connId }) => {
  console.log(`disconnect ${userId} ${connId}: ${sse.getUserConnectionCount(userId)} connection(s) left`)
})

const app = express()
app.use(express.json())

app.get('/sse/:userId', (req, res) => {
  sse.registerConnection(req.params.userId, res, { rooms: ['global'] })
})

app.get('/api/user/:userId/connections/count', (req, res) => {
  const { userId } = req.params
  res.json({ userId, connectionCount: sse.getUserConnectionCount(userId), isOnline: sse.isUserOnline(userId) })
})

app.get('/api/user/:userId/connections/details', (req, res) => {
  const { userId } = req.params
  res.json({
    userId,
    connectionCount: sse.getUserConnectionCount(userId),
    connectionIds: sse.getUserConnectionIds(userId),
    isOnline: sse.isUserOnline(userId)
  })
})

app.get('/api/users/connections/stats', (_req, res) => {
  const userStats = sse.getAllUsersConnectionStats()
  const { connections, users, rooms } = sse.stats()
  res.json({
    globalStats: { totalConnections: connections, totalUsers: users, totalRooms: rooms },
    userStats,
    onlineUsers: Object.keys(userStats)
  })
})

// Send to one user, only if online.
app.post('/api/user/:userId/message', (req, res) => {
  const { userId } = req.params
  const { message } = req.body ?? {}
  if (!sse.isUserOnline(userId)) return res.status(404).json({ error: 'user offline', userId, connectionCount: 0 })
  const connectionCount = sse.getUserConnectionCount(userId)
  const sentToConnections = sse.sendToUser(userId, { type: 'message', content: message })
  res.json({ success: true, userId, message, connectionCount, sentToConnections })
})

// Send to several users; report who was online.
app.post('/api/users/broadcast', (req, res) => {
  const { userIds = [], message } = req.body ?? {}
  const results = userIds.map((userId) => {
    const isOnline = sse.isUserOnline(userId)
    return {
      userId,
      connectionCount: sse.getUserConnectionCount(userId),
      isOnline,
      sentCount: isOnline ? sse.sendToUser(userId, { type: 'broadcast', content: message }) : 0
    }
  })
  res.json({ success: true, message, results, totalOnlineUsers: results.filter((r) => r.isOnline).length })
})

if (STATS_LOG_MS > 0) {
  setInterval(() => {
    const { connections, users } = sse.stats()
    const detail = Object.entries(sse.getAllUsersConnectionStats()).map(([u, n]) => `${u}=${n}`).join(' ')
    console.log(`stats: ${connections} connection(s), ${users} user(s) ${detail}`)
  }, STATS_LOG_MS).unref()
}

const server = app.listen(PORT, HOST, () => {
  console.log(`ssekify user-connection-stats listening on http://${HOST || 'localhost'}:${PORT}`)
})

process.once('SIGTERM', async () => {
  await sse.shutdown({ graceMs: Number(process.env.SHUTDOWN_GRACE_MS || 5000) })
  server.close()
  server.closeIdleConnections()
})
