// Package efotest is test support for enhanced fan-out, imported only by
// _test.go files (it imports internal/testenv):
//
//   - StartMock starts kinesis-mock (npm kinesis-local) on free ports, with
//     helpers to create streams and put records into a given shard.
//   - InitialResponseShim makes aws-sdk-go-v2's SubscribeToShard work with
//     kinesis-mock, which omits the initial-response event the SDK expects.
//     Test code only: production clients talk to the real service, which
//     sends it.
//   - Server is an HTTP/2 TLS server speaking the SubscribeToShard event
//     stream, scripted per call (ShardHandler for a scripted shard): ChildShards
//     at shard end, subscriptions ended early, exceptions and error answers,
//     which kinesis-mock cannot produce.
package efotest
