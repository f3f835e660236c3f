// Feeds messages through Kafka Connect's own JsonConverter, as a sink connector's worker would,
// and prints the Connect data it makes of each: the schema and the value, for the key and the
// value. Run with the Kafka jars (connect-json, connect-api, Jackson) on the class path:
//
//   java -cp '.tools/kafka/libs/*' ConnectValues.java TOPIC SCHEMAS_ENABLE < messages
//
// Each input line is one message, `KEY_HEX VALUE_HEX`, where `-` stands for a null part. Each
// output line is a JSON object {"key": …, "key_schema": …, "value": …, "value_schema": …}.
// Values are written as JSON where JSON holds them exactly; the rest are tagged objects:
// {"decimal": "99.50"} (BigDecimal.toPlainString), {"date": "2024-02-29"} (Connect's Date),
// {"timestamp": "2024-05-06T07:08:09.123Z"} (Connect's Timestamp), {"base64": "…"} (bytes).
// A schema is "TYPE", with "/name" and "(scale=s)" for named and decimal schemas and a "?"
// for an optional one; a struct's is {"fields": [[name, schema], …], "name": …, "optional": …},
// an array's {"array": items}, a map's {"map": [keys, values]}.

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.math.BigDecimal;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.time.Instant;
import java.time.LocalDate;
import java.time.ZoneOffset;
import java.util.Base64;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import org.apache.kafka.connect.data.Date;
import org.apache.kafka.connect.data.Decimal;
import org.apache.kafka.connect.data.Field;
import org.apache.kafka.connect.data.Schema;
import org.apache.kafka.connect.data.SchemaAndValue;
import org.apache.kafka.connect.data.Struct;
import org.apache.kafka.connect.data.Timestamp;
import org.apache.kafka.connect.json.JsonConverter;

public class ConnectValues {
    static final JsonNodeFactory NODES = JsonNodeFactory.instance;

    public static void main(String[] args) throws Exception {
        String topic = args[0];
        Map<String, String> config = Map.of("schemas.enable", args[1]);
        JsonConverter keys = new JsonConverter();
        keys.configure(config, true);
        JsonConverter values = new JsonConverter();
        values.configure(config, false);
        ObjectMapper mapper = new ObjectMapper();
        BufferedReader in =
                new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        String line;
        while ((line = in.readLine()) != null) {
            if (line.isBlank()) {
                continue;
            }
            String[] parts = line.trim().split(" ");
            SchemaAndValue key = keys.toConnectData(topic, bytes(parts[0]));
            SchemaAndValue value = values.toConnectData(topic, bytes(parts[1]));
            ObjectNode out = NODES.objectNode();
            out.set("key", render(key.schema(), key.value()));
            out.set("key_schema", describe(key.schema()));
            out.set("value", render(value.schema(), value.value()));
            out.set("value_schema", describe(value.schema()));
            System.out.println(mapper.writeValueAsString(out));
        }
    }

    static byte[] bytes(String hex) {
        return hex.equals("-") ? null : HexFormat.of().parseHex(hex);
    }

    static JsonNode describe(Schema schema) {
        if (schema == null) {
            return NODES.nullNode();
        }
        switch (schema.type()) {
            case STRUCT: {
                ObjectNode node = NODES.objectNode();
                ArrayNode fields = node.putArray("fields");
                for (Field field : schema.fields()) {
                    fields.addArray().add(field.name()).add(describe(field.schema()));
                }
                node.put("name", schema.name());
                node.put("optional", schema.isOptional());
                return node;
            }
            case ARRAY: {
                ObjectNode node = NODES.objectNode();
                node.set("array", describe(schema.valueSchema()));
                node.put("optional", schema.isOptional());
                return node;
            }
            case MAP: {
                ObjectNode node = NODES.objectNode();
                node.putArray("map").add(describe(schema.keySchema())).add(describe(schema.valueSchema()));
                node.put("optional", schema.isOptional());
                return node;
            }
            default: {
                StringBuilder text = new StringBuilder(schema.type().name());
                if (schema.name() != null) {
                    text.append('/').append(schema.name());
                }
                if (Decimal.LOGICAL_NAME.equals(schema.name())) {
                    text.append("(scale=").append(schema.parameters().get(Decimal.SCALE_FIELD)).append(')');
                }
                if (schema.isOptional()) {
                    text.append('?');
                }
                return NODES.textNode(text.toString());
            }
        }
    }

    static JsonNode render(Schema schema, Object value) {
        if (value == null) {
            return NODES.nullNode();
        }
        if (value instanceof Struct struct) {
            ObjectNode node = NODES.objectNode();
            for (Field field : struct.schema().fields()) {
                node.set(field.name(), render(field.schema(), struct.get(field)));
            }
            return node;
        }
        if (value instanceof BigDecimal decimal) {
            return NODES.objectNode().put("decimal", decimal.toPlainString());
        }
        if (value instanceof java.util.Date date) {
            String name = schema == null ? null : schema.name();
            if (Date.LOGICAL_NAME.equals(name)) {
                LocalDate day = Instant.ofEpochMilli(date.getTime()).atZone(ZoneOffset.UTC).toLocalDate();
                return NODES.objectNode().put("date", day.toString());
            }
            if (Timestamp.LOGICAL_NAME.equals(name)) {
                return NODES.objectNode().put("timestamp", Instant.ofEpochMilli(date.getTime()).toString());
            }
            throw new IllegalStateException("a java.util.Date under schema " + name);
        }
        if (value instanceof byte[] raw) {
            return NODES.objectNode().put("base64", Base64.getEncoder().encodeToString(raw));
        }
        if (value instanceof ByteBuffer buffer) {
            byte[] raw = new byte[buffer.remaining()];
            buffer.duplicate().get(raw);
            return NODES.objectNode().put("base64", Base64.getEncoder().encodeToString(raw));
        }
        if (value instanceof List<?> list) {
            ArrayNode node = NODES.arrayNode();
            for (Object item : list) {
                node.add(render(schema == null ? null : schema.valueSchema(), item));
            }
            return node;
        }
        if (value instanceof Map<?, ?> map) {
            ObjectNode node = NODES.objectNode();
            for (Map.Entry<?, ?> entry : new TreeMap<>(map).entrySet()) {
                node.set(String.valueOf(entry.getKey()),
                        render(schema == null ? null : schema.valueSchema(), entry.getValue()));
            }
            return node;
        }
        if (value instanceof Boolean b) {
            return NODES.booleanNode(b);
        }
        if (value instanceof Byte || value instanceof Short || value instanceof Integer || value instanceof Long) {
            return NODES.numberNode(((Number) value).longValue());
        }
        if (value instanceof Float f) {
            return NODES.numberNode(f);
        }
        if (value instanceof Double d) {
            return NODES.numberNode(d);
        }
        if (value instanceof String s) {
            return NODES.textNode(s);
        }
        throw new IllegalStateException("an unexpected Connect value " + value.getClass() + ": " + value);
    }
}
