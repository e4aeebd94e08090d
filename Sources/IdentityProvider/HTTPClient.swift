// Blocking HTTP over libcurl for the identity provider's token and admin
// endpoints. A bounded pool of easy handles keeps connections alive between
// requests; a handle serves one request at a time. Every request has a whole-
// request deadline and a response body limit.
import CCurl
import CShim
import RedisCache

/// One HTTP request. Header lines and body may carry credentials: never log them.
struct HTTPRequest {
    enum Method {
        case get
        case post
    }

    var method: Method
    var url: String
    /// Header lines in `Name: value` form.
    var headers: [String] = []
    /// Request body of a POST, already encoded by the caller.
    var body: [UInt8] = []
}

/// Status code and body of one HTTP response.
struct HTTPResponse: Sendable {
    var status: Int
    var body: [UInt8]
}

/// A failure to get a response. Descriptions contain no URL, header or body.
enum HTTPClientError: Error, Equatable, CustomStringConvertible {
    /// The whole request took longer than the configured timeout.
    case timedOut(milliseconds: Int)
    /// The response body was larger than the limit, so the transfer was aborted.
    case bodyTooLarge(limit: Int)
    /// libcurl failed: connection refused, TLS failure, reset, ...
    case transport(code: Int, message: String)
    /// Every handle of the pool stayed busy until the request's deadline.
    case noHandleAvailable(handles: Int)
    /// curl_global_init or curl_easy_init failed.
    case initializationFailed(String)

    var description: String {
        switch self {
        case .timedOut(let milliseconds): "request timed out after \(milliseconds) ms"
        case .bodyTooLarge(let limit): "response body exceeds the limit of \(limit) bytes"
        case .transport(let code, let message): "transfer failed (curl error \(code)): \(message)"
        case .noHandleAvailable(let handles): "all \(handles) HTTP handles stayed busy until the deadline"
        case .initializationFailed(let what): "libcurl initialization failed: \(what)"
        }
    }
}

/// Settings of an `HTTPClient`.
struct HTTPClientOptions: Sendable {
    /// Whole-request timeout in seconds, connection setup included.
    var timeout: Double = 5
    var connectTimeout: Double = 2
    /// CA bundle for HTTPS; nil uses libcurl's default store.
    var caFile: String?
    /// Upper bound on easy handles, and so on concurrent requests.
    var maxHandles: Int = 8
    /// Largest accepted response body in bytes.
    var maxBodyBytes: Int = 1 << 20
}

/// curl_global_init runs once per process, on first use. Swift initializes
/// globals lazily and exactly once, even when several threads race.
private let curlGlobalInitResult: CURLcode = curl_global_init(Int(CURL_GLOBAL_ALL))

/// Sends HTTP requests through a bounded pool of libcurl easy handles.
/// Thread-safe: any thread may call `send`, which blocks until the response
/// arrives, the request times out or the transfer fails.
final class HTTPClient: Sendable {
    let options: HTTPClientOptions
    private let pool: EasyHandlePool

    init(options: HTTPClientOptions) throws(HTTPClientError) {
        guard curlGlobalInitResult == CURLE_OK else {
            throw .initializationFailed(String(cString: curl_easy_strerror(curlGlobalInitResult)))
        }
        self.options = options
        self.pool = EasyHandlePool(maxHandles: max(1, options.maxHandles))
    }

    /// Sends `request` and returns the response, whatever its status code.
    /// - Throws: `HTTPClientError` when no complete response arrived.
    func send(_ request: HTTPRequest) throws(HTTPClientError) -> HTTPResponse {
        let deadline = monotonicNanoseconds() + nanoseconds(options.timeout)
        let handle = try pool.acquire(deadline: deadline)
        defer { pool.release(handle) }
        return try handle.perform(request, options: options)
    }
}

/// Idle easy handles plus a count of all handles created, under one lock.
/// A caller that finds no idle handle creates one while the count is below
/// the bound, and otherwise waits for a release until its deadline.
private final class EasyHandlePool: @unchecked Sendable {
    // @unchecked: `idle` and `created` are touched only with `lock` held, and
    // a handle taken from `idle` belongs to the one thread that took it.
    private let lock = ConditionLock()
    private var idle: [CurlEasyHandle] = []
    private var created = 0
    private let maxHandles: Int

    init(maxHandles: Int) {
        self.maxHandles = maxHandles
    }

    func acquire(deadline: UInt64) throws(HTTPClientError) -> CurlEasyHandle {
        lock.lock()
        while true {
            if let handle = idle.popLast() {
                lock.unlock()
                return handle
            }
            if created < maxHandles {
                created += 1
                lock.unlock()
                guard let handle = CurlEasyHandle() else {
                    lock.withLock { created -= 1 }
                    throw .initializationFailed("curl_easy_init returned NULL")
                }
                return handle
            }
            if !lock.wait(until: deadline) && idle.isEmpty {
                lock.unlock()
                throw .noHandleAvailable(handles: maxHandles)
            }
        }
    }

    func release(_ handle: CurlEasyHandle) {
        lock.withLock {
            idle.append(handle)
            lock.broadcast()
        }
    }
}

/// The response body as it arrives, capped at a byte limit. libcurl's write
/// callback reaches it through CURLOPT_WRITEDATA.
private final class ResponseSink {
    var bytes: [UInt8] = []
    let limit: Int
    var exceededLimit = false

    init(limit: Int) {
        self.limit = limit
    }

    /// Appends a chunk; returns false, which aborts the transfer, when the
    /// body would exceed the limit.
    func append(_ chunk: UnsafeRawBufferPointer) -> Bool {
        guard bytes.count + chunk.count <= limit else {
            exceededLimit = true
            return false
        }
        bytes.append(contentsOf: chunk)
        return true
    }
}

/// One libcurl easy handle and its error buffer. Not thread-safe: the pool
/// hands it to one thread at a time. The handle keeps its connection cache
/// across requests, so a keep-alive connection is reused.
private final class CurlEasyHandle {
    private let handle: UnsafeMutableRawPointer
    private let errorBuffer: UnsafeMutablePointer<CChar>

    init?() {
        guard let handle = curl_easy_init() else { return nil }
        self.handle = handle
        errorBuffer = .allocate(capacity: Int(CURL_ERROR_SIZE))
        errorBuffer.initialize(repeating: 0, count: Int(CURL_ERROR_SIZE))
    }

    deinit {
        curl_easy_cleanup(handle)
        errorBuffer.deallocate()
    }

    func perform(_ request: HTTPRequest, options: HTTPClientOptions) throws(HTTPClientError) -> HTTPResponse {
        // curl_easy_reset clears every option, the previous request's body
        // included, but keeps live connections for reuse.
        curl_easy_reset(handle)
        errorBuffer[0] = 0
        let sink = ResponseSink(limit: options.maxBodyBytes)
        var headerList: UnsafeMutablePointer<curl_slist>?
        for line in request.headers {
            headerList = curl_slist_append(headerList, line)
        }
        defer { curl_slist_free_all(headerList) }

        let timeoutMilliseconds = max(1, Int(options.timeout * 1000))
        setCommonOptions(request, options: options, timeoutMilliseconds: timeoutMilliseconds)
        _ = mc_curl_setopt_pointer(handle, CURLOPT_HTTPHEADER, UnsafeMutableRawPointer(headerList))
        _ = mc_curl_setopt_pointer(handle, CURLOPT_WRITEDATA, Unmanaged.passUnretained(sink).toOpaque())
        _ = mc_curl_setopt_write_function(handle) { data, size, count, context in
            guard let context else { return 0 }
            let sink = Unmanaged<ResponseSink>.fromOpaque(context).takeUnretainedValue()
            let length = size * count
            guard length > 0, let data else { return length }
            return sink.append(UnsafeRawBufferPointer(start: data, count: length)) ? length : 0
        }
        if request.method == .post {
            setPostBody(request.body)
        }

        // The sink must outlive the transfer, because the callback gets an
        // unretained pointer to it.
        let code = withExtendedLifetime(sink) { curl_easy_perform(handle) }
        guard code == CURLE_OK else {
            throw error(for: code, sink: sink, timeoutMilliseconds: timeoutMilliseconds, limit: options.maxBodyBytes)
        }
        var status = 0
        _ = mc_curl_getinfo_long(handle, CURLINFO_RESPONSE_CODE, &status)
        return HTTPResponse(status: status, body: sink.bytes)
    }

    private func setCommonOptions(_ request: HTTPRequest, options: HTTPClientOptions, timeoutMilliseconds: Int) {
        _ = mc_curl_setopt_string(handle, CURLOPT_URL, request.url)
        _ = mc_curl_setopt_string(handle, CURLOPT_PROTOCOLS_STR, "http,https")
        // An empty proxy turns off http_proxy and friends from the
        // environment: bearer tokens go straight to the configured URL.
        _ = mc_curl_setopt_string(handle, CURLOPT_PROXY, "")
        // NOSIGNAL: libcurl must not use SIGALRM for timeouts in a threaded process.
        _ = mc_curl_setopt_long(handle, CURLOPT_NOSIGNAL, 1)
        _ = mc_curl_setopt_long(handle, CURLOPT_TIMEOUT_MS, timeoutMilliseconds)
        _ = mc_curl_setopt_long(handle, CURLOPT_CONNECTTIMEOUT_MS, max(1, Int(options.connectTimeout * 1000)))
        _ = mc_curl_setopt_long(handle, CURLOPT_TCP_NODELAY, 1)
        _ = mc_curl_setopt_long(handle, CURLOPT_TCP_KEEPALIVE, 1)
        // Rejects a declared Content-Length over the limit before any byte is read.
        _ = mc_curl_setopt_long(handle, CURLOPT_MAXFILESIZE, options.maxBodyBytes)
        _ = mc_curl_setopt_pointer(handle, CURLOPT_ERRORBUFFER, UnsafeMutableRawPointer(errorBuffer))
        if let caFile = options.caFile {
            _ = mc_curl_setopt_string(handle, CURLOPT_CAINFO, caFile)
        }
    }

    private func setPostBody(_ body: [UInt8]) {
        _ = mc_curl_setopt_long(handle, CURLOPT_POST, 1)
        _ = mc_curl_setopt_long(handle, CURLOPT_POSTFIELDSIZE, body.count)
        // COPYPOSTFIELDS copies the bytes into the handle, so `body` need not
        // outlive this call; curl_easy_reset frees the copy.
        guard !body.isEmpty else {
            _ = mc_curl_setopt_string(handle, CURLOPT_COPYPOSTFIELDS, "")
            return
        }
        body.withUnsafeBufferPointer { buffer in
            _ = mc_curl_setopt_pointer(
                handle, CURLOPT_COPYPOSTFIELDS, UnsafeMutableRawPointer(mutating: buffer.baseAddress))
        }
    }

    private func error(
        for code: CURLcode, sink: ResponseSink, timeoutMilliseconds: Int, limit: Int
    ) -> HTTPClientError {
        if code == CURLE_OPERATION_TIMEDOUT {
            return .timedOut(milliseconds: timeoutMilliseconds)
        }
        if code == CURLE_FILESIZE_EXCEEDED || (code == CURLE_WRITE_ERROR && sink.exceededLimit) {
            return .bodyTooLarge(limit: limit)
        }
        let detail = errorBuffer[0] != 0 ? String(cString: errorBuffer) : String(cString: curl_easy_strerror(code))
        return .transport(code: Int(code.rawValue), message: detail)
    }
}
