package org.mimizuku.ci;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

import org.opensearch.analysis.common.CommonAnalysisPlugin;
import org.opensearch.cluster.service.ClusterService;
import org.opensearch.common.logging.LogConfigurator;
import org.opensearch.common.settings.Settings;
import org.opensearch.env.Environment;
import org.opensearch.node.InternalSettingsPreparer;
import org.opensearch.node.Node;
import org.opensearch.painless.PainlessPlugin;
import org.opensearch.transport.Netty4Plugin;

/**
 * A single OpenSearch 2.19 node for Mimizuku's tests, started in-process from Maven Central's
 * artifacts (the distribution tarball cannot be downloaded on the project's machines).
 *
 * <p>Why a Node subclass: the modules that a distribution loads from {@code modules/} (netty4
 * for HTTP, the common analysers, painless) are passed as classpath plugins through Node's
 * protected constructor, as OpenSearch's own MockNode and the published embedded runners do.
 * The node listens on 127.0.0.1 only, with no security plugin (plain HTTP, no users): a test
 * bench, never a deployment.
 *
 * <p>Usage: {@code java -Xms512m -Xmx512m -cp CLASSPATH org.mimizuku.ci.TestNode HOME HTTP_PORT
 * TRANSPORT_PORT}. HOME holds data/ and logs/. On start it prints one line
 * {@code MIMIZUKU-OPENSEARCH-READY http=127.0.0.1:PORT version=X} on stdout; SIGTERM (or
 * SIGINT) closes the node and the process exits 0.
 */
public final class TestNode {

    /** Node with the given classpath plugins; cluster-id logging needs a log4j setup we skip. */
    static final class EmbeddedNode extends Node {
        EmbeddedNode(Environment environment) {
            super(environment,
                  List.of(Netty4Plugin.class, CommonAnalysisPlugin.class, PainlessPlugin.class),
                  true);
        }

        @Override
        protected void configureNodeAndClusterIdStateListener(ClusterService clusterService) {
            // the distribution's NodeAndClusterIdStateListener only feeds log4j's
            // %node_id pattern, which this node's console logging does not use
        }
    }

    private TestNode() {}

    public static void main(String[] args) throws Exception {
        if (args.length != 3) {
            System.err.println("usage: TestNode HOME HTTP_PORT TRANSPORT_PORT");
            System.exit(2);
        }
        Path home = Path.of(args[0]).toAbsolutePath();
        Files.createDirectories(home.resolve("config"));
        Files.createDirectories(home.resolve("data"));
        Files.createDirectories(home.resolve("logs"));

        Settings settings = Settings.builder()
            .put("cluster.name", "mimizuku-test")
            .put("node.name", "mimizuku-test-node")
            .put("path.home", home.toString())
            .put("path.data", home.resolve("data").toString())
            .put("path.logs", home.resolve("logs").toString())
            .put("discovery.type", "single-node")
            .put("network.host", "127.0.0.1")
            .put("http.port", args[1])
            .put("transport.port", args[2])
            .put("http.type", "netty4")
            .put("transport.type", "netty4")
            // a test node on a shared CI disk: never refuse writes for disk watermarks
            .put("cluster.routing.allocation.disk.threshold_enabled", false)
            .put("logger.level", System.getenv().getOrDefault("MIMIZUKU_OPENSEARCH_LOG_LEVEL", "INFO"))
            .build();

        LogConfigurator.registerErrorListener();
        LogConfigurator.configureWithoutConfig(settings);
        Environment environment = InternalSettingsPreparer.prepareEnvironment(
            settings, Map.of(), home.resolve("config"), () -> "mimizuku-test-node");

        Node node = new EmbeddedNode(environment);
        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                node.close();
                node.awaitClose(30, TimeUnit.SECONDS);
            } catch (Exception e) {
                e.printStackTrace();
            } finally {
                stopped.countDown();
            }
        }, "mimizuku-test-node-shutdown"));

        node.start();
        // One node cannot hold replicas: every index created without a replica count gets 0, so
        // the cluster goes green. Index creation reads this from the cluster state's persistent
        // settings, not from the node's own settings, hence the API call.
        node.client().admin().cluster().prepareUpdateSettings()
            .setPersistentSettings(Settings.builder().put("cluster.default_number_of_replicas", 0))
            .get();
        System.out.println("MIMIZUKU-OPENSEARCH-READY http=127.0.0.1:" + args[1]
                           + " version=" + org.opensearch.Version.CURRENT);
        System.out.flush();
        stopped.await();
    }
}
