// Package efotest is test support for enhanced fan-out, imported only by
// _test.go files (it imports internal/testenv):
//
//   - EFOClient and HTTPClient reach the TLS endpoint of a kinesis-mock
//     started with testenv.StartKinesis (which starts it, creates streams
//     and gives plain clients) through InitialResponseShim; ShardIDs and Put
//     put records into a given shard.
//   - InitialResponseShim makes aws-sdk-go-v2's SubscribeToShard work with
//     kinesis-mock, which omits the initial-response event the SDK expects.
//     Test code only: production clients talk to the real service, which
//     sends it.
//   - Server is an HTTP/2 TLS server speaking the SubscribeToShard event
//     stream, scripted per call (ShardHandler for a scripted shard): ChildShards
//     at shard end, subscriptions ended early, exceptions and error answers,
//     which kinesis-mock cannot produce.
package efotest
