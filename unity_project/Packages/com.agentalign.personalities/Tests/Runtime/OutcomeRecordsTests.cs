// The outcome side channel's bytes: int32 count, then 24 bytes per record, little-endian.

using NUnit.Framework;

namespace AgentAlign.Tests
{
    public class OutcomeRecordsTests
    {
        [Test]
        public void OneRecordIsCountPlusTwentyFourBytes()
        {
            var record = new OutcomeRecord { AgentId = 7, Step = 3, X = 1f, Y = -2f, Heading = 90f, Outcome = SharedSpec.OutcomeFell };
            byte[] bytes = OutcomeRecords.Encode(new[] { record });
            Assert.AreEqual(4 + SharedSpec.OutcomeRecordBytes, bytes.Length);
            Assert.AreEqual(1, bytes[0]);
            Assert.AreEqual(7, bytes[4]);
        }
    }
}
