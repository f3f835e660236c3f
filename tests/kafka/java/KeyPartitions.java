// Sends one record per key to each topic with Kafka's Java producer and its default
// partitioner, and prints where the broker stored each: "<topic> <key hex> <partition>
// <offset>", one line per record, topic by topic, keys in input order. Keys are read from
// standard input, one hex string a line (an empty line is the empty key). The value is the key.
//
// Run from the tests' jars in source-file mode (tests/src/kafka.rs, java_source_command):
//   java -cp '.tools/kafka/libs/*' tests/kafka/java/KeyPartitions.java BOOTSTRAP TOPIC... < keys
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.Future;

import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.serialization.ByteArraySerializer;

public class KeyPartitions {
    public static void main(String[] args) throws Exception {
        if (args.length < 2) {
            System.err.println("usage: KeyPartitions BOOTSTRAP TOPIC... < hex keys");
            System.exit(2);
        }
        Properties config = new Properties();
        config.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        config.put(ProducerConfig.ACKS_CONFIG, "all");
        config.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        config.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        // No partitioner.class: the default, BuiltInPartitioner, is what is under test.

        List<String> keys = new ArrayList<>();
        try (BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.US_ASCII))) {
            for (String line = in.readLine(); line != null; line = in.readLine()) {
                keys.add(line.trim());
            }
        }
        HexFormat hex = HexFormat.of();
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(config)) {
            for (int t = 1; t < args.length; t++) {
                String topic = args[t];
                List<Future<RecordMetadata>> sent = new ArrayList<>();
                for (String key : keys) {
                    byte[] bytes = hex.parseHex(key);
                    sent.add(producer.send(new ProducerRecord<>(topic, bytes, bytes)));
                }
                producer.flush();
                for (int i = 0; i < keys.size(); i++) {
                    RecordMetadata stored = sent.get(i).get();
                    System.out.println(topic + " " + keys.get(i) + " " + stored.partition() + " " + stored.offset());
                }
            }
        }
    }
}
