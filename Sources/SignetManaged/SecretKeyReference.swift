/// A key of a Secret in the managed certificate's namespace.
public struct SecretKeyReference: Codable, Hashable, Sendable {
    public var name: String
    public var key: String

    public init(name: String, key: String) {
        self.name = name
        self.key = key
    }
}
