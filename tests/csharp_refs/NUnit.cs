// Reference declarations: the NUnit 3 API (the version Unity's Test Framework bundles) that the
// package's tests use, from NUnit's documentation. Debian ships NUnit 2.6 only, so the tests
// compile here against these signatures; bodies are stubs. Not NUnit's code. Compiled into
// nunit.framework.dll by tests/conftest.py.

using System;

namespace NUnit.Framework
{
    // https://docs.nunit.org/articles/nunit/writing-tests/attributes/test.html
    [AttributeUsage(AttributeTargets.Method)]
    public class TestAttribute : Attribute
    {
    }

    // https://docs.nunit.org/articles/nunit/writing-tests/assertions/classic-assertions/Assert.AreEqual.html
    public class Assert
    {
        // https://docs.nunit.org/articles/nunit/writing-tests/assertions/classic-assertions/Assert.AreEqual.html
        public static void AreEqual(object expected, object actual) { }

        // https://docs.nunit.org/articles/nunit/writing-tests/assertions/classic-assertions/Assert.IsTrue.html
        public static void IsTrue(bool condition) { }

        // https://docs.nunit.org/articles/nunit/writing-tests/assertions/classic-assertions/Assert.IsFalse.html
        public static void IsFalse(bool condition) { }

        // https://docs.nunit.org/articles/nunit/writing-tests/assertions/classic-assertions/Assert.IsNull.html
        public static void IsNull(object anObject) { }
    }

    // https://docs.nunit.org/articles/nunit/writing-tests/assertions/classic-assertions/String-Assert.html
    public class StringAssert
    {
        // https://docs.nunit.org/articles/nunit/writing-tests/assertions/classic-assertions/String-Assert.html
        public static void Contains(string expected, string actual) { }
    }
}
