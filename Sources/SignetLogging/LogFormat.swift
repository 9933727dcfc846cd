import Logging

/// How Signet writes its log: `text` for people (swift-log's stream format), `json` for log pipelines such as Azure
/// Monitor, Loki or Elasticsearch (one object per line).
public enum LogFormat: String, Sendable, CaseIterable {
    case text, json

    /// Makes every `Logger` write to standard error in this format, each line carrying the request id of the request
    /// it was logged for (`RequestIdentity`). Call once, before the first logger is made.
    public func bootstrap() {
        let provider = RequestIdentity.metadataProvider
        switch self {
        case .text:
            LoggingSystem.bootstrap(
                { label, provider in
                    StreamLogHandler.standardError(label: label, metadataProvider: provider)
                }, metadataProvider: provider)
        case .json:
            LoggingSystem.bootstrap(
                { label, provider in
                    JSONLogHandler(label: label, metadataProvider: provider)
                }, metadataProvider: provider)
        }
    }
}

/// The id of the request the current task serves, for its log lines.
///
/// A task-local because the value crosses a library boundary: swift-log's metadata provider is how a logger made
/// anywhere (a service, a store, a library's) learns which request it logs for, without every call passing it.
public enum RequestIdentity {
    @TaskLocal public static var current: String?

    public static let metadataProvider = Logger.MetadataProvider {
        guard let id = current else { return [:] }
        return ["requestId": .string(id)]
    }
}
