// Package relay hands every Terra event terragate stores on to the app's own backends
// (RELAY_DESTINATIONS), signed the Standard Webhooks way, retried on a schedule and
// replayable: a transactional outbox in the store, worked by the Relay's goroutines.
package relay
