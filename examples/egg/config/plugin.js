'use strict'
// What this example does not use: off, so the single process starts fast and watches no files.
module.exports = {
  development: false,
  watcher: false,
  logrotator: false,
  schedule: false,
  static: false,
  view: false,
  i18n: false,
  multipart: false,
  jsonp: false,
  session: false
}
