package dev.switchyard.bench.kstreams;

import java.nio.charset.StandardCharsets;
import java.util.Arrays;

/** A minimal length-prefixed binary writer and reader for the serdes. */
final class Bin {
    private Bin() {}

    static final class Writer {
        private byte[] buf = new byte[256];
        private int len;

        private void ensure(int more) {
            if (len + more > buf.length) {
                buf = Arrays.copyOf(buf, Math.max(buf.length * 2, len + more));
            }
        }

        void writeByte(int b) {
            ensure(1);
            buf[len++] = (byte) b;
        }

        void writeInt(int v) {
            ensure(4);
            buf[len++] = (byte) (v >>> 24);
            buf[len++] = (byte) (v >>> 16);
            buf[len++] = (byte) (v >>> 8);
            buf[len++] = (byte) v;
        }

        void writeLong(long v) {
            writeInt((int) (v >>> 32));
            writeInt((int) v);
        }

        /** A string that is never null. */
        void writeString(String s) {
            byte[] b = s.getBytes(StandardCharsets.UTF_8);
            writeInt(b.length);
            ensure(b.length);
            System.arraycopy(b, 0, buf, len, b.length);
            len += b.length;
        }

        /** A string that may be null (length -1). */
        void writeNullable(String s) {
            if (s == null) {
                writeInt(-1);
            } else {
                writeString(s);
            }
        }

        byte[] toBytes() {
            return Arrays.copyOf(buf, len);
        }
    }

    static final class Reader {
        private final byte[] buf;
        private int pos;

        Reader(byte[] buf) {
            this.buf = buf;
        }

        int readByte() {
            return buf[pos++] & 0xff;
        }

        int readInt() {
            int v = ((buf[pos] & 0xff) << 24) | ((buf[pos + 1] & 0xff) << 16)
                    | ((buf[pos + 2] & 0xff) << 8) | (buf[pos + 3] & 0xff);
            pos += 4;
            return v;
        }

        long readLong() {
            long high = readInt() & 0xffffffffL;
            long low = readInt() & 0xffffffffL;
            return (high << 32) | low;
        }

        String readNullable() {
            int n = readInt();
            if (n < 0) {
                return null;
            }
            String s = new String(buf, pos, n, StandardCharsets.UTF_8);
            pos += n;
            return s;
        }

        String readString() {
            String s = readNullable();
            if (s == null) {
                throw new IllegalStateException("unexpected null string in serialized state");
            }
            return s;
        }
    }
}
