// The bytes of one outcome side-channel message, as python/agentalign/spec.py packs them
// (pack_outcomes): int32 count, then per record int32 agent_id, int32 step, float32 x,
// float32 y, float32 heading, int32 outcome, all little-endian. Plain C# (no UnityEngine).

using System.Collections.Generic;
using System.IO;

namespace AgentAlign
{
    public struct OutcomeRecord
    {
        public int AgentId;   // the id Python sees for this agent (ML-Agents' episode id)
        public int Step;      // decisions taken in the episode
        public float X;       // metres east (Unity x)
        public float Y;       // metres north (Unity z)
        public float Heading; // degrees clockwise from north
        public int Outcome;   // SharedSpec.Running or an outcome code
    }

    public static class OutcomeRecords
    {
        public static byte[] Encode(IList<OutcomeRecord> records)
        {
            using (var stream = new MemoryStream(4 + records.Count * SharedSpec.OutcomeRecordBytes))
            {
                // BinaryWriter writes little-endian on every platform, as ML-Agents' messages do.
                using (var writer = new BinaryWriter(stream))
                {
                    writer.Write(records.Count);
                    foreach (OutcomeRecord record in records)
                    {
                        writer.Write(record.AgentId);
                        writer.Write(record.Step);
                        writer.Write(record.X);
                        writer.Write(record.Y);
                        writer.Write(record.Heading);
                        writer.Write(record.Outcome);
                    }
                }
                return stream.ToArray();
            }
        }
    }
}
